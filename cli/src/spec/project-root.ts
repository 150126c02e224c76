/**
 * The project directory a spec's files must stay inside: the git work tree that holds the `-f`
 * directory, else its parent. `-f ~/specs` or a repository checked out as the home directory
 * would make that the home directory, and `deployment: { path: .. }` would pack `~/.ssh` into a
 * package anyone allowed to read it could download; such a root is refused, as is `/`.
 */
import { lstat, realpath } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";

export interface ProjectRoot {
  path: string;
  /** How it was found, for messages: `the git work tree holding the spec directory`. */
  what: string;
  /** Why no file may be named from it; undefined when it is a fine root. */
  refused?: string;
}

export async function findProjectRoot(
  specDir: string,
  home: string | undefined,
): Promise<ProjectRoot> {
  const top = await gitTopLevel(specDir);
  const root: ProjectRoot = top
    ? { path: top, what: "the git work tree holding the spec directory" }
    : { path: dirname(specDir), what: "the parent of the spec directory" };
  const refused = await unsafeRoot(root.path, home);
  return refused ? { ...root, refused } : root;
}

/** The nearest directory from `dir` upwards holding `.git` (a directory, or a worktree's file). */
async function gitTopLevel(dir: string): Promise<string | undefined> {
  for (let at = dir; ; at = dirname(at)) {
    if (await exists(join(at, ".git"))) return at;
    if (dirname(at) === at) return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function unsafeRoot(root: string, home: string | undefined): Promise<string | undefined> {
  if (dirname(root) === root) return "the file system's root";
  if (home === undefined || home === "" || !isAbsolute(home)) return undefined;
  const realHome = await realpath(home).catch(() => resolve(home));
  const fromRoot = relative(root, realHome);
  if (fromRoot === "") return "your home directory ($HOME)";
  if (!fromRoot.startsWith("..") && !isAbsolute(fromRoot))
    return "a directory holding your home directory ($HOME)";
  return undefined;
}
