/**
 * Where the registry token comes from: FIZZ_TOKEN, else the admin-token file `npm start` writes
 * into its data dir (FIZZ_DATA_DIR, or the nearest `.fizz/` from the current directory upward,
 * the way git finds `.git/`). Never printed: errors name where a token came from, not what it is.
 */
import { readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { CliError } from "./errors.js";

export interface FoundToken {
  token: string;
  /** For messages: "FIZZ_TOKEN" or the file's path. */
  source: string;
}

export const TOKEN_FILE = "admin-token";
/** A token is one short line; anything bigger is not a token file. */
const MAX_TOKEN_FILE_BYTES = 4096;

export function findToken(
  env: Readonly<Record<string, string | undefined>>,
  cwd: string,
): FoundToken | undefined {
  const fromEnv = env.FIZZ_TOKEN?.trim();
  if (fromEnv) return { token: fromEnv, source: "FIZZ_TOKEN" };
  const dataDir = env.FIZZ_DATA_DIR?.trim();
  if (dataDir) return readTokenFile(join(resolve(cwd, dataDir), TOKEN_FILE));
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const found = readTokenFile(join(dir, ".fizz", TOKEN_FILE));
    if (found) return found;
    if (dirname(dir) === dir) return undefined;
  }
}

/** undefined when there is no such file; a CliError when there is one we cannot use. */
function readTokenFile(path: string): FoundToken | undefined {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new CliError(`the token file ${path} is not a regular file`);
    size = st.size;
  } catch (err) {
    if (err instanceof CliError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw new CliError(`cannot read the token file ${path}: ${(err as Error).message}`);
  }
  if (size > MAX_TOKEN_FILE_BYTES)
    throw new CliError(`the token file ${path} is ${size} bytes: not a token file`);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "EACCES" ? "permission denied" : (err as Error).message;
    throw new CliError(`cannot read the token file ${path}: ${why}`);
  }
  const token = text.trim();
  if (!token) throw new CliError(`the token file ${path} is empty`);
  return { token, source: path };
}
