/** Reading the user's files: function code for the registry and request bodies for `fn test`. */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { CliError } from "./errors.js";
import type { CodeUpload } from "./types.js";

/**
 * The upload format of `spec.code`. Only the base name is sent: the runtime writes the file into
 * its own work dir and the name is what stack traces will show.
 */
export async function readCodeFile(path: string): Promise<CodeUpload> {
  const bytes = await readUserFile(path, "code file");
  return { filename: basename(path), content: bytes.toString("base64") };
}

/** `--body @file` sends the file's bytes; any other value is sent as the text itself. */
export async function readBody(value: string): Promise<{ bytes: Buffer; fromFile: boolean }> {
  if (value.startsWith("@") && value.length > 1) {
    return { bytes: await readUserFile(value.slice(1), "body file"), fromFile: true };
  }
  return { bytes: Buffer.from(value, "utf8"), fromFile: false };
}

async function readUserFile(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === "ENOENT"
        ? "no such file"
        : code === "EISDIR"
          ? "it is a directory"
          : code === "EACCES"
            ? "permission denied"
            : (err as Error).message;
    throw new CliError(`cannot read ${what} "${path}": ${reason}`);
  }
}
