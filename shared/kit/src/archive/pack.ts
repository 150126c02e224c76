import { createHash, type Hash } from "node:crypto";
import { constants, createWriteStream } from "node:fs";
import { lstat, open, readdir, realpath, rm, stat } from "node:fs/promises";
import { isAbsolute, join, relative, resolve } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { Header, Pax } from "tar";
import { FizzError } from "@fizz/events";
import { ArchiveError } from "./errors.js";

/**
 * Canonical archives: a directory packed as a gzip'd tar that depends only on the names, bytes
 * and exec bits of its regular files and on its directories. Entries are sorted, mtime is 0,
 * modes are 0644/0755, no owner is recorded, so the same tree always hashes to the same digest.
 * The headers come from node-tar's encoder (ustar, PAX for long names); the walk is our own so
 * that nothing but regular files and directories can get in.
 */
export interface PackOptions {
  /** Largest compressed output; over it the file is removed and PAYLOAD_TOO_LARGE thrown. */
  maxBytes?: number;
  /**
   * Largest sum of file bytes read (symlink copies included): a few links to one big file must
   * not make the packer compress far more than was uploaded. Over it: ArchiveError.
   */
  maxTotalBytes?: number;
  /**
   * gzip level, default zlib's (6). 0 stores: a compiled function's binary barely compresses and
   * inflating it is most of its cold start (a 6 MB Go binary: 52 ms inflated in Go, 1 ms stored).
   */
  gzipLevel?: number;
}

export interface PackResult {
  /** `sha256:<hex>` of the tar.gz bytes. */
  digest: string;
  size: number;
  /** Regular files stored (symlink copies included). */
  files: number;
  /** Relative paths left out: links going outside or to non-files, devices, FIFOs, sockets. */
  skipped: string[];
}

type Entry = { rel: string; kind: "dir" } | { rel: string; kind: "file"; source: string };

const EPOCH = new Date(0);
const READ_SIZE = 64 * 1024;
const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function inside(root: string, target: string): boolean {
  const rel = relative(root, target);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

/** Depth-first, each directory's names sorted, so the order never depends on the filesystem. */
async function* walk(
  root: string,
  dir: string,
  prefix: string,
  skipped: string[],
  exclude: string,
): AsyncGenerator<Entry> {
  const names = (await readdir(dir)).sort(byCodeUnit);
  for (const name of names) {
    const abs = join(dir, name);
    const rel = prefix === "" ? name : `${prefix}/${name}`;
    if (abs === exclude) continue;
    // The extractor refuses backslashes; leave such names out so the output always re-extracts.
    if (name.includes("\\")) {
      skipped.push(rel);
      continue;
    }
    const st = await lstat(abs);
    if (st.isDirectory()) {
      yield { rel, kind: "dir" };
      yield* walk(root, abs, rel, skipped, exclude);
    } else if (st.isFile()) {
      yield { rel, kind: "file", source: abs };
    } else if (st.isSymbolicLink()) {
      const target = await realpath(abs).catch(() => undefined);
      const isFile = target !== undefined && (await stat(target)).isFile();
      if (target !== undefined && isFile && inside(root, target)) {
        // Read through the resolved path: the copy is exactly the file the check approved.
        yield { rel, kind: "file", source: target };
      } else {
        skipped.push(rel);
      }
    } else {
      skipped.push(rel);
    }
  }
}

function header(path: string, type: "File" | "Directory", mode: number, size: number): Buffer[] {
  const block = Buffer.alloc(512);
  const needPax = new Header({ path, type, mode, size, mtime: EPOCH }).encode(block);
  return needPax ? [new Pax({ path }).encode(), block] : [block];
}

/** The tar byte stream of the entries, reading each file exactly once through a no-follow fd. */
async function* tarBytes(
  entries: AsyncIterable<Entry>,
  counts: { files: number; bytes: number },
  maxTotalBytes: number,
): AsyncGenerator<Buffer> {
  for await (const e of entries) {
    if (e.kind === "dir") {
      yield* header(`${e.rel}/`, "Directory", 0o755, 0);
      continue;
    }
    const fh = await open(e.source, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new Error(`${e.rel} changed while packing`);
      counts.files += 1;
      counts.bytes += st.size;
      if (counts.bytes > maxTotalBytes) throw new ArchiveError(e.rel, "total size over the limit");
      yield* header(e.rel, "File", (st.mode & 0o111) !== 0 ? 0o755 : 0o644, st.size);
      let left = st.size;
      while (left > 0) {
        const buf = Buffer.allocUnsafe(Math.min(READ_SIZE, left));
        const { bytesRead } = await fh.read(buf, 0, buf.length, st.size - left);
        if (bytesRead === 0) throw new Error(`${e.rel} shrank while packing`);
        left -= bytesRead;
        yield buf.subarray(0, bytesRead);
      }
      const pad = (512 - (st.size % 512)) % 512;
      if (pad > 0) yield Buffer.alloc(pad);
    } finally {
      await fh.close();
    }
  }
  yield Buffer.alloc(1024); // end-of-archive: two zero blocks
}

function meter(hash: Hash, counts: { size: number }, maxBytes: number): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      counts.size += chunk.length;
      if (counts.size > maxBytes) {
        done(new FizzError("PAYLOAD_TOO_LARGE", `archive over the limit of ${maxBytes} bytes`));
        return;
      }
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

/**
 * Packs `dir` into `outFile` (created, must not exist) as a canonical tar.gz, streaming and hashing
 * as it writes. The tree must hold still while packing (no process writing to it). On any
 * failure `outFile` is removed.
 */
export async function packDirectory(
  dir: string,
  outFile: string,
  opts: PackOptions = {},
): Promise<PackResult> {
  const root = await realpath(dir);
  const out = resolve(outFile);
  const skipped: string[] = [];
  const counts = { files: 0, bytes: 0, size: 0 };
  const hash = createHash("sha256");
  const entries = walk(root, resolve(dir), "", skipped, out);
  try {
    await pipeline(
      Readable.from(tarBytes(entries, counts, opts.maxTotalBytes ?? Number.POSITIVE_INFINITY)),
      createGzip(opts.gzipLevel === undefined ? {} : { level: opts.gzipLevel }),
      meter(hash, counts, opts.maxBytes ?? Number.POSITIVE_INFINITY),
      createWriteStream(out, { flags: "wx", mode: 0o644 }),
    );
  } catch (err) {
    // Not when the file was someone else's: "wx" refused to touch an existing one.
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") await rm(out, { force: true });
    throw err;
  }
  return {
    digest: `sha256:${hash.digest("hex")}`,
    size: counts.size,
    files: counts.files,
    skipped,
  };
}
