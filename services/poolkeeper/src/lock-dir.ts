import { closeSync, fstatSync, openSync } from "node:fs";
import { lockSync, NOFOLLOW_DIR } from "./remove-calls";

/**
 * As root, makes the directory `dir` root's and 0700 through a descriptor opened with O_NOFOLLOW,
 * so no uid can reach anything under it by a path any more: whose it was. Undefined when there is
 * no directory there (gone, or a link or a file: ENOENT, ENOTDIR, ELOOP), nothing done, nothing
 * followed; another failure is thrown. Only the last component is not followed: `dir`'s parent
 * must be root's (instance and build directories, the start-up sweep's), or its owner could swap
 * the name after the lock. Not root: undefined (instances run as the same user, no one to stop).
 */
export function lockDir(dir: string): number | undefined {
  if (process.getuid?.() !== 0) return undefined;
  let fd: number | undefined;
  try {
    fd = openSync(dir, NOFOLLOW_DIR);
    const owner = fstatSync(fd).uid;
    lockSync(fd);
    return owner;
  } catch (err) {
    if (["ENOENT", "ENOTDIR", "ELOOP"].includes((err as NodeJS.ErrnoException).code ?? ""))
      return undefined;
    throw err;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
