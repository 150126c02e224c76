// @ts-check
/**
 * The archive form of POST /v2/specialize (docs/runtime-contract.md): one line of JSON, then a
 * gzip'd tar to the end of the body. The tar is extracted while it streams in, and every byte of
 * the body after the line is hashed, so the caller can refuse the whole thing (and remove what was
 * written) when it does not hash to its digest. Nothing extracted is loaded before that check.
 *
 * Only regular files and directories are written. No symlink is ever created, so every path is
 * resolved through real directories of our own making: a name without `..` that is not absolute
 * cannot leave the target directory. Files are created exclusively (`wx`), so an entry cannot
 * overwrite another.
 *
 * Imported lazily (node-tar costs tens of milliseconds to load): the single-file path never pays
 * for it, and a warm instance preloads it once its rehearsal is done (server.mjs).
 */
import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { Parser } from "tar/parse";
import { HttpError } from "./http.mjs";

/** @typedef {import("node:http").IncomingMessage} Req */
/** @typedef {import("tar").ReadEntry} ReadEntry */
/** @typedef {{ maxBytes: number, maxEntries: number }} ArchiveLimits */

const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);
const LINK_TYPES = new Set(["SymbolicLink", "Link"]);
const DEVICE_TYPES = new Set(["CharacterDevice", "BlockDevice", "FIFO"]);
/** Longer entry names than this are refused; no real package needs them. */
const MAX_NAME_LENGTH = 4096;

/** ARCHIVE_UNSAFE: names the entry (when there is one) and the rule it broke. */
export class ArchiveUnsafe extends Error {
  /**
   * @param {string | undefined} entry
   * @param {string} rule
   */
  constructor(entry, rule) {
    super(entry === undefined ? `archive: ${rule}` : `entry ${JSON.stringify(entry)}: ${rule}`);
  }
}

/**
 * Reads the body up to its first "\n". Resolves with the line and the bytes after it that came in
 * the same chunk; the request is left paused for receiveArchive.
 * @param {Req} req
 * @param {number} limit
 * @returns {Promise<{ line: Buffer, rest: Buffer }>}
 */
export function readJsonLine(req, limit) {
  return new Promise((resolve, reject) => {
    /** @type {Buffer[]} */
    const chunks = [];
    let size = 0;
    const done = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", reject);
    };
    /** @param {Buffer} chunk */
    const onData = (chunk) => {
      const at = chunk.indexOf(10);
      if (at < 0 || size + at > limit) {
        chunks.push(chunk);
        size += chunk.length;
        if (size <= limit) return;
        done();
        req.pause();
        const message = `body: the JSON line is longer than ${limit} bytes`;
        reject(new HttpError(400, "VALIDATION_FAILED", message, true, "body"));
        return;
      }
      done();
      req.pause();
      chunks.push(chunk.subarray(0, at));
      resolve({ line: Buffer.concat(chunks), rest: chunk.subarray(at + 1) });
    };
    const onEnd = () => {
      done();
      const message = "body: must be one line of JSON ended by \\n, then the archive";
      reject(new HttpError(400, "VALIDATION_FAILED", message, false, "body"));
    };
    req.on("data", onData);
    req.once("end", onEnd);
    req.once("error", reject);
  });
}

/**
 * Streams the rest of the body into `dir` (created here, 0700; it must not exist). Resolves with
 * the digest of all the bytes and, when the archive broke a rule, the refusal (an ArchiveUnsafe,
 * or a plain Error when writing failed for another reason, e.g. a full disk): extraction then
 * stops but the body is still read to its end, so the digest decides between DIGEST_MISMATCH and
 * ARCHIVE_UNSAFE and the connection stays usable. Rejects with an HttpError when the body is over
 * `maxBytes` or cut short. Either way the caller removes `dir` unless it loads it.
 * @param {Req} req paused, positioned after the JSON line
 * @param {Buffer} head the bytes already read after the line
 * @param {string} dir
 * @param {ArchiveLimits} limits
 * @returns {Promise<{ digest: string, refusal: Error | undefined, files: number }>}
 */
export function receiveArchive(req, head, dir, limits) {
  mkdirSync(dir, { mode: 0o700 });
  const hash = createHash("sha256");
  const writer = new TreeWriter(dir, limits);
  const parser = new Parser({
    strict: true,
    // The byte and entry caps bound the output; a ratio check would refuse a package of text.
    maxDecompressionRatio: Number.MAX_SAFE_INTEGER,
    onwarn: (_code, message) =>
      writer.refuse(new ArchiveUnsafe(undefined, `malformed: ${message}`)),
  });
  parser.on("entry", (/** @type {ReadEntry} */ entry) => writer.entry(entry));
  parser.on("error", (/** @type {Error} */ err) =>
    writer.refuse(new ArchiveUnsafe(undefined, `malformed: ${err.message}`)),
  );
  const parsed = new Promise((resolve) => parser.once("end", resolve));

  return new Promise((resolve, reject) => {
    let received = 0;
    let sniffed = false;
    /** @param {Buffer} chunk */
    const feed = (chunk) => {
      if (chunk.length === 0) return;
      received += chunk.length;
      if (received > limits.maxBytes) {
        cleanup();
        req.resume(); // discarded; the connection is closed after the answer
        writer.close();
        const message = `archive exceeds ${limits.maxBytes} bytes`;
        reject(new HttpError(413, "PAYLOAD_TOO_LARGE", message, true));
        return;
      }
      hash.update(chunk);
      if (!sniffed) {
        sniffed = true;
        // gzip only: the parser would also take a plain, brotli or zstd tar.
        if (chunk[0] !== 0x1f || (chunk.length > 1 && chunk[1] !== 0x8b)) {
          writer.refuse(new ArchiveUnsafe(undefined, "not a gzip'd tar"));
        }
      }
      if (writer.refusal) return;
      try {
        if (!parser.write(chunk)) {
          req.pause();
          parser.once("drain", () => req.resume());
        }
      } catch (err) {
        writer.refuse(new ArchiveUnsafe(undefined, `malformed: ${String(err)}`));
      }
    };
    const onEnd = () => {
      cleanup();
      const finish = () => {
        writer.close();
        const digest = `sha256:${hash.digest("hex")}`;
        if (!sniffed) writer.refuse(new ArchiveUnsafe(undefined, "empty"));
        resolve({ digest, refusal: writer.refusal, files: writer.files });
      };
      if (writer.refusal) return finish();
      parser.end();
      // The parser ends synchronously for a complete archive; a refusal may come instead.
      void Promise.race([parsed, writer.refused]).then(finish);
    };
    const onClose = () => {
      if (req.complete) return;
      cleanup();
      writer.close();
      reject(new HttpError(400, "INVALID_BODY", "request body was cut short", true));
    };
    const cleanup = () => {
      req.off("data", feed);
      req.off("end", onEnd);
      req.off("close", onClose);
      req.off("error", onClose);
    };
    req.on("data", feed);
    req.once("end", onEnd);
    req.once("close", onClose);
    req.once("error", onClose);
    feed(head);
    // A body that came in one chunk has ended already: its 'end' was emitted while the line was
    // being parsed, before these listeners existed.
    if (req.readableEnded) onEnd();
    else req.resume();
  });
}

/**
 * Writes entries under `root` with synchronous fs: the instance serves nothing else yet, and
 * writes finish in order, so there is never a write in flight when the caller removes the tree.
 */
class TreeWriter {
  /**
   * @param {string} root
   * @param {ArchiveLimits} limits
   */
  constructor(root, limits) {
    this.root = root;
    this.limits = limits;
    this.entries = 0;
    this.files = 0;
    this.bytes = 0;
    /** @type {Error | undefined} */
    this.refusal = undefined;
    /** @type {number | undefined} the file being written */
    this.fd = undefined;
    /** @type {(value: unknown) => void} */
    let settle = () => {};
    /** Resolves once a refusal is recorded. */
    this.refused = new Promise((resolve) => (settle = resolve));
    this.settle = settle;
  }

  /** @param {Error} refusal the first one wins: an ArchiveUnsafe, or a failure to write */
  refuse(refusal) {
    if (this.refusal) return;
    this.refusal = refusal;
    this.close();
    this.settle(undefined);
  }

  close() {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }

  /** @param {ReadEntry} entry */
  entry(entry) {
    if (this.refusal) return void entry.resume();
    try {
      this.write(entry);
    } catch (err) {
      entry.resume();
      this.refuse(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** @param {ReadEntry} entry */
  write(entry) {
    const name = entry.path;
    if (++this.entries > this.limits.maxEntries) {
      throw new ArchiveUnsafe(name, `more than ${this.limits.maxEntries} entries`);
    }
    const segments = entrySegments(name);
    if (entry.type === "Directory") {
      entry.resume();
      if (segments.length > 0) this.mkdir(name, segments);
      return;
    }
    if (LINK_TYPES.has(entry.type)) throw new ArchiveUnsafe(name, "links are not allowed");
    if (DEVICE_TYPES.has(entry.type)) throw new ArchiveUnsafe(name, "device file or FIFO");
    if (!FILE_TYPES.has(entry.type)) {
      throw new ArchiveUnsafe(name, `unsupported entry type ${entry.type}`);
    }
    if (segments.length === 0) throw new ArchiveUnsafe(name, "a file without a name");
    this.bytes += entry.size ?? 0;
    if (this.bytes > this.limits.maxBytes) {
      throw new ArchiveUnsafe(name, `files total more than ${this.limits.maxBytes} bytes`);
    }
    if (segments.length > 1) this.mkdir(name, segments.slice(0, -1));
    // Owner only: the instance's own uid is the only reader. Executables stay executable.
    const mode = (entry.mode ?? 0) & 0o100 ? 0o700 : 0o600;
    try {
      this.fd = openSync(join(this.root, ...segments), "wx", mode);
    } catch (err) {
      throw fsError(err, name, "duplicate entry");
    }
    this.files += 1;
    const fd = this.fd;
    entry.on("data", (/** @type {Buffer} */ chunk) => {
      if (this.fd !== fd) return; // refused meanwhile; the rest is discarded
      try {
        writeSync(fd, chunk);
      } catch (err) {
        this.refuse(fsError(err, name, "cannot be written"));
      }
    });
    entry.once("end", () => {
      if (this.fd === fd) this.close();
    });
  }

  /**
   * @param {string} name
   * @param {string[]} segments
   */
  mkdir(name, segments) {
    try {
      mkdirSync(join(this.root, ...segments), { recursive: true, mode: 0o700 });
    } catch (err) {
      throw fsError(err, name, "path passes through a file");
    }
  }
}

/**
 * The entry's name as path segments under the root ([] for the root itself, "./"), or refused.
 * Any `..` segment is refused, even one that would stay inside: no real archive needs it.
 * @param {string} name
 */
function entrySegments(name) {
  if (name.length === 0 || name.includes("\0")) throw new ArchiveUnsafe(name, "invalid name");
  if (name.length > MAX_NAME_LENGTH) throw new ArchiveUnsafe(name, "name too long");
  if (name.includes("\\")) throw new ArchiveUnsafe(name, "backslash in path");
  if (name.startsWith("/")) throw new ArchiveUnsafe(name, "absolute path");
  const segments = name.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) throw new ArchiveUnsafe(name, "path escapes the archive root");
  return segments;
}

/**
 * A name clash is the archive's fault; anything else (a full disk) is the instance's.
 * @param {unknown} err
 * @param {string} name
 * @param {string} onClash
 */
function fsError(err, name, onClash) {
  const code = /** @type {NodeJS.ErrnoException} */ (err).code;
  if (code === "EEXIST" || code === "ENOTDIR" || code === "EISDIR") {
    return new ArchiveUnsafe(name, onClash);
  }
  return new Error(`cannot write ${JSON.stringify(name)}: ${code ?? String(err)}`);
}
