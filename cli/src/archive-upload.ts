/**
 * `--src` and `--deploy`: turning a path into an archive upload. A directory (or a single source
 * file) is packed as tar.gz while it is sent, an existing archive is sent as is; either way the
 * bytes stream from disk to the socket, so a 200 MiB package never sits in the CLI's memory.
 * The registry re-packs whatever it gets into its canonical form, so nothing here has to be
 * deterministic.
 */
import { constants, createReadStream, readlinkSync, type Stats } from "node:fs";
import { open, readdir, realpath, stat } from "node:fs/promises";
import { basename, dirname, join, relative, resolve, sep, isAbsolute } from "node:path";
import { pipeline, Transform, type Readable } from "node:stream";
import { createGzip } from "node:zlib";
import { create as tarCreate, type Pack, type ReadEntry } from "tar";
import { ApiError, CliError } from "./errors.js";
import type { Context } from "./context.js";
import type { ArchiveRef } from "./types.js";

export type ArchiveUse = "source" | "deployment";

/** What a path turned out to be, for the progress line and errors. */
export type UploadKind = "directory" | "archive" | "file";

interface Prepared {
  kind: UploadKind;
  stream: Readable;
}

/**
 * node-tar reads each file in one buffer of up to 16 MiB by default, and its own gzip option
 * pushes compressed output on without waiting for the reader; small reads and Node's gzip in a
 * pipeline keep the whole chain under backpressure (the upload test measures it).
 */
const TAR_OPTIONS = {
  portable: true,
  follow: false,
  strict: true,
  maxReadSize: 256 * 1024,
} as const;

function gzipped(tar: Pack): Readable {
  const gzip = createGzip();
  // The pipeline's error (an unreadable file) surfaces through the gzip stream's iterator.
  // Pack is a Minipass stream: a Node readable in all but its (exactOptional) typing.
  pipeline(tar as unknown as NodeJS.ReadableStream, gzip, () => {});
  return gzip;
}

/** Skipped entries named on stderr before the rest is summarised. */
const MAX_WARNINGS = 10;

/**
 * Uploads `path` (given as `flag`) to the registry's archive store and returns the stored
 * canonical archive. Fails with a CliError naming the flag when the path cannot be read or packed.
 */
export async function uploadPath(
  ctx: Context,
  path: string,
  flag: string,
  use: ArchiveUse,
): Promise<ArchiveRef> {
  const warnings: string[] = [];
  const prepared = await prepare(path, flag, warnings);
  const { ARCHIVE_MAX_BYTES } = await import("@fizz/events");
  const state: { bytes: number; error?: unknown } = { bytes: 0 };
  const body = counter(state, ARCHIVE_MAX_BYTES, flag, path);
  // A packing error (an unreadable file) ends the body with it, and the upload with it.
  pipeline(prepared.stream, body, (err) => {
    if (err) state.error ??= err;
  });
  let ref: ArchiveRef;
  try {
    ref = await ctx.registry.uploadArchive(use, body);
  } catch (err) {
    // The registry's own answer (413, ARCHIVE_UNSAFE...) says more than a broken pipe would.
    if (err instanceof ApiError) throw err;
    if (state.error !== undefined) throw asCliError(state.error, flag, path);
    throw err;
  } finally {
    reportSkipped(ctx, flag, warnings);
  }
  return ref;
}

/** Counts what is sent and stops past the limit: the registry would refuse it after the upload. */
function counter(
  state: { bytes: number; error?: unknown },
  maxBytes: number,
  flag: string,
  path: string,
): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      state.bytes += chunk.length;
      if (state.bytes <= maxBytes) return done(null, chunk);
      state.error ??= new CliError(
        `${flag} "${path}" packs to more than ${maxBytes} bytes, the registry's archive limit`,
      );
      done(state.error as Error);
    },
  });
}

async function prepare(path: string, flag: string, warnings: string[]): Promise<Prepared> {
  let st: Stats;
  try {
    st = await stat(path);
  } catch (err) {
    throw new CliError(`cannot read ${flag} "${path}": ${reasonOf(err)}`);
  }
  if (st.isDirectory())
    return { kind: "directory", stream: await packDirectory(path, flag, warnings) };
  if (!st.isFile()) throw new CliError(`${flag} "${path}" is not a directory or a regular file`);
  if (await isArchive(path, flag)) {
    return { kind: "archive", stream: createReadStream(path) };
  }
  // One source file (`--src hello.py`): a package holding just that file.
  return {
    kind: "file",
    stream: gzipped(tarCreate({ ...TAR_OPTIONS, cwd: dirname(resolve(path)) }, [basename(path)])),
  };
}

/** gzip, zip or tar, by their magic bytes (the registry sniffs the same way). */
async function isArchive(path: string, flag: string): Promise<boolean> {
  const head = Buffer.alloc(512);
  let bytesRead: number;
  try {
    const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      ({ bytesRead } = await handle.read(head, 0, head.length, 0));
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw new CliError(`cannot read ${flag} "${path}": ${reasonOf(err)}`);
  }
  const gzip = bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  const zip =
    bytesRead >= 4 && head.readUInt32BE(0) >>> 16 === 0x504b && [3, 5].includes(head[2] ?? 0);
  const tar = bytesRead >= 262 && head.toString("latin1", 257, 262) === "ustar";
  return gzip || zip || tar;
}

/**
 * tar.gz of the directory's contents (paths relative to it). Only what the registry keeps is
 * sent: regular files, directories, and links that stay inside the directory; a link pointing
 * outside it (the registry refuses the whole upload for one) or a socket/FIFO/device is skipped
 * and named on stderr.
 */
async function packDirectory(dir: string, flag: string, warnings: string[]): Promise<Readable> {
  let root: string;
  let entries: string[];
  try {
    root = await realpath(dir);
    entries = (await readdir(root)).sort();
  } catch (err) {
    throw new CliError(`cannot read ${flag} "${dir}": ${reasonOf(err)}`);
  }
  if (entries.length === 0) throw new CliError(`${flag} "${dir}" is an empty directory`);
  const filter = (entry: string, st: Stats | ReadEntry): boolean => {
    // Creating an archive, tar hands over the lstat() of each entry (ReadEntry is for reading).
    if (!("isFile" in st) || st.isFile() || st.isDirectory()) return true;
    if (st.isSymbolicLink()) {
      const problem = linkProblem(root, entry);
      if (problem === undefined) return true;
      warnings.push(`${entry}: ${problem}`);
      return false;
    }
    warnings.push(`${entry}: not a regular file, directory or link`);
    return false;
  };
  return gzipped(tarCreate({ ...TAR_OPTIONS, cwd: root, filter }, entries));
}

/** Why a link inside `root` cannot be kept, or undefined when its target stays inside. */
function linkProblem(root: string, entry: string): string | undefined {
  const at = join(root, entry);
  let target: string;
  try {
    target = readlinkSync(at);
  } catch (err) {
    return reasonOf(err);
  }
  const resolved = isAbsolute(target) ? target : resolve(dirname(at), target);
  const rel = relative(root, resolved);
  if (rel === "" || rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    return `link to ${target} points outside the directory`;
  }
  return undefined;
}

function reportSkipped(ctx: Context, flag: string, warnings: string[]): void {
  for (const w of warnings.slice(0, MAX_WARNINGS))
    ctx.stderr.write(`warning: ${flag}: skipped ${w}\n`);
  if (warnings.length > MAX_WARNINGS) {
    ctx.stderr.write(`warning: ${flag}: skipped ${warnings.length - MAX_WARNINGS} more entries\n`);
  }
}

function asCliError(err: unknown, flag: string, path: string): CliError {
  if (err instanceof CliError) return err;
  return new CliError(`cannot pack ${flag} "${path}": ${reasonOf(err)}`);
}

export function reasonOf(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT"
    ? "no such file or directory"
    : code === "EACCES"
      ? "permission denied"
      : err instanceof Error
        ? err.message
        : String(err);
}
