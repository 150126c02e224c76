import { randomBytes } from "node:crypto";
import { lchownSync, linkSync, lstatSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { chmod, lstat, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { extractArchive } from "@fizz/kit/archive";

/**
 * A cached package archive, extracted once by the poolkeeper into files that are root's and
 * read-only, so that a Go instance gets its package as hard links (no un-gzip, untar, write or
 * hash of its own: ~12 ms of a 6 MB deployment's cold start). Every check the runtime makes on
 * an archive it extracts is made here instead, once per digest, on bytes the cache hashed:
 * `extractArchive`'s (no absolute or `..` path, no device, the size and entry caps), and then
 * stricter: only regular files and directories (a symlink or a hard link inside the archive, which
 * the Go runtime refuses, means no tree: the instance is sent the archive and refuses it itself).
 */

/** More entries than this are streamed as an archive: a tree costs a link(2) per file per instance. */
export const TREE_MAX_ENTRIES = 64;

/**
 * The Go runtime chmods its binary itself when it extracts (an archive may not keep the bit); it
 * cannot chmod a root-owned file, so the tree gives the bit here.
 */
const ALWAYS_EXECUTABLE = new Set(["fizz-function"]);

export interface PackageTree {
  /** The extracted copy in the cache (root's 0700 directory). */
  dir: string;
  /** Relative directories, parents first. */
  dirs: string[];
  /** Relative regular files. */
  files: string[];
  /** Bytes of file data. */
  bytes: number;
}

/**
 * Extracts `archive` (already verified against its digest) into `dest`, which must not exist, and
 * makes every file 0444 (0555 when any execute bit was set: no setuid, setgid or sticky bit, never
 * writable). Undefined, and nothing left behind, when the archive cannot be a tree.
 */
export async function extractTree(
  archive: string,
  dest: string,
  maxBytes: number,
): Promise<PackageTree | undefined> {
  try {
    const { totalBytes } = await extractArchive({ path: archive }, dest, {
      maxTotalBytes: maxBytes,
      maxFiles: TREE_MAX_ENTRIES,
    });
    const tree: PackageTree = { dir: dest, dirs: [], files: [], bytes: totalBytes };
    await walk(dest, "", tree);
    // The extracted directories stay 0700 (the cache's own); instances get directories of their own.
    await chmod(dest, 0o700);
    return tree;
  } catch {
    await rm(dest, { recursive: true, force: true });
    return undefined;
  }
}

async function walk(root: string, rel: string, tree: PackageTree): Promise<void> {
  for (const entry of await readdir(path.join(root, rel))) {
    const relPath = rel === "" ? entry : `${rel}/${entry}`;
    const full = path.join(root, relPath);
    const st = await lstat(full);
    if (st.isDirectory()) {
      await chmod(full, 0o700);
      tree.dirs.push(relPath);
      await walk(root, relPath, tree);
    } else if (st.isFile() && st.nlink === 1) {
      const exec = (st.mode & 0o111) !== 0 || (rel === "" && ALWAYS_EXECUTABLE.has(entry));
      await chmod(full, exec ? 0o555 : 0o444);
      tree.files.push(relPath);
    } else {
      // A symlink, or a hard link the archive made between its own files.
      throw new Error(`${relPath}: not a plain file or directory`);
    }
  }
}

/**
 * Makes the tree appear in `privateDir` (an instance's own 0700 directory) under a fresh name:
 * directories given to the directory's owner (the instance's uid), each file a hard link to the
 * cached one, which stays root's and read-only: the uid can read and run it, never change what the
 * next instance of the function gets. Built in `staging` (root's 0700 directory on the same
 * filesystem: the cache's), out of the uid's reach, then renamed into place in one step, so no
 * path root writes through is one the uid could swap for a link meanwhile (rename fails on
 * anything planted under the name: a file, a link, a non-empty directory). Returns the name;
 * undefined, and nothing left, when it cannot.
 */
export function linkTree(
  tree: PackageTree,
  privateDir: string,
  staging: string,
): string | undefined {
  const name = `.fizz-package-${randomBytes(16).toString("hex")}`;
  const stage = path.join(staging, `.stage${name}`);
  // Synchronous: a handful of metadata calls of a few microseconds each. Through the thread pool
  // each was a round trip, and on a loaded machine (2 cores, load 15) the chain took ~58 ms
  // against the archive's one link's 14.
  try {
    const owner = lstatSync(privateDir);
    if (!owner.isDirectory()) return undefined;
    mkdirSync(stage, { mode: 0o700 });
    for (const d of tree.dirs) mkdirSync(path.join(stage, d), { mode: 0o700 });
    for (const f of tree.files) linkSync(path.join(tree.dir, f), path.join(stage, f));
    for (const d of tree.dirs) lchownSync(path.join(stage, d), owner.uid, owner.gid);
    lchownSync(stage, owner.uid, owner.gid);
    renameSync(stage, path.join(privateDir, name));
    return name;
  } catch {
    try {
      rmSync(stage, { recursive: true, force: true });
    } catch {
      // Nothing made: nothing to leave behind.
    }
    return undefined;
  }
}
