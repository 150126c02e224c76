/** Reading the user's files: function code for the registry and request bodies for `fn test`. */
import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { basename } from "node:path";
import type { Stats } from "node:fs";
import { CliError } from "./errors.js";
import type { CodeUpload } from "./types.js";

/**
 * The upload format of `spec.code`. Only the base name is sent: the runtime writes the file into
 * its own work dir and the name is what stack traces will show.
 */
export async function readCodeFile(path: string, maxBytes: number): Promise<CodeUpload> {
  const bytes = await readUserFile(path, "--code", maxBytes, "FIZZ_CODE_MAX_BYTES");
  return { filename: basename(path), content: bytes.toString("base64") };
}

/** `--body @file` sends the file's bytes; any other value is sent as the text itself. */
export async function readBody(
  value: string,
  maxBytes: number,
): Promise<{ bytes: Buffer; fromFile: boolean }> {
  if (value.startsWith("@") && value.length > 1) {
    const bytes = await readUserFile(value.slice(1), "--body", maxBytes, "FIZZ_MAX_BODY_BYTES");
    return { bytes, fromFile: true };
  }
  return { bytes: Buffer.from(value, "utf8"), fromFile: false };
}

/** A secret's or configmap's `--from-file`: the same checks as --code, its own limit. */
export function readValueFile(path: string, flag: string, maxBytes: number): Promise<Buffer> {
  return readUserFile(path, flag, maxBytes, "the registry's 1 MiB limit per secret or configmap");
}

const READ_CHUNK_BYTES = 64 * 1024;

/**
 * Checks what the path is before reading a byte: `--code /dev/zero` or a FIFO would otherwise
 * hang or fill memory. Opening non-blocking keeps a FIFO from blocking in open() itself, and the
 * checks run on the opened handle, so the file cannot be swapped between check and read.
 */
async function readUserFile(
  path: string,
  flag: string,
  maxBytes: number,
  limitVariable: string,
): Promise<Buffer> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new CliError(`cannot read ${flag} "${path}": ${reasonOf(err)}`);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new CliError(`${flag} "${path}" is ${kindOf(st)}, not a regular file`);
    const tooBig = (size: string) =>
      new CliError(
        `${flag} "${path}" is ${size} bytes, over the limit of ${maxBytes} bytes (${limitVariable})`,
      );
    if (st.size > maxBytes) throw tooBig(String(st.size));
    // Bounded even so: some regular files (under /proc) report size 0 and are not.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.alloc(READ_CHUNK_BYTES);
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) throw tooBig(`more than ${maxBytes}`);
      chunks.push(chunk.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks, total);
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`cannot read ${flag} "${path}": ${reasonOf(err)}`);
  } finally {
    await handle.close();
  }
}

function reasonOf(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT"
    ? "no such file"
    : code === "EISDIR"
      ? "it is a directory"
      : code === "EACCES"
        ? "permission denied"
        : (err as Error).message;
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}
