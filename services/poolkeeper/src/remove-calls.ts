import {
  chmodSync,
  close,
  closeSync,
  constants,
  fchmod,
  fchmodSync,
  fchown,
  fchownSync,
  fstat,
  fstatSync,
  lchownSync,
  lstatSync,
  open,
  openSync,
  opendirSync,
  renameSync,
  rmdirSync,
  unlinkSync,
  type Stats,
} from "node:fs";
import * as fsp from "node:fs/promises";
import { promisify } from "node:util";

// The fs calls a tree removal (remove-tree.ts) makes, each on a descriptor or a /proc/self/fd
// path (at), so that nothing is reached by a path a writer in the tree could swap; sync and
// async sets, and the seam (Calls) a test wraps to act between two of them.

export const NOFOLLOW_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/**
 * `name` inside the directory open as `fd`. The kernel resolves /proc/self/fd/<fd> to that very
 * directory (as openat(2) would, which Node lacks), not by its path: no rename or link swap of
 * anything above it can send the operation elsewhere; the last component is never followed by
 * lstat, unlink, rmdir, rename, nor by open with O_NOFOLLOW.
 */
export function at(fd: number, name: string): string {
  return `/proc/self/fd/${fd}/${name}`;
}

/**
 * Names a listing holds at once. A directory was read whole (readdir): 200,000 names of 200
 * characters took +45 MB of heap in the poolkeeper, per directory being removed, and a tenant can
 * make millions. Read in batches while its entries are removed instead: Linux (as POSIX says)
 * returns each entry that is neither removed nor added meanwhile exactly once, so one pass is one
 * listing; what is added meanwhile may be missed, as after a whole listing (rmdir's ENOTEMPTY).
 * A listing is one more descriptor per directory open (remove-tree.ts's MOVE_DEPTH, MAX_DEPTH).
 */
const LIST_BATCH = 128;

/** A directory read a batch at a time: `read` gives up to LIST_BATCH names, none at its end. */
export interface Listing {
  read(): string[] | Promise<string[]>;
  close(): void | Promise<void>;
}

/**
 * The calls a removal makes: on /proc/self/fd paths (at) or on descriptors. A test passes its own
 * (wrapping ASYNC_CALLS) to act between two of them, as a process racing the removal would.
 */
export interface Calls {
  lstat(p: string): Stats | Promise<Stats>;
  unlink(p: string): void | Promise<void>;
  rmdir(p: string): void | Promise<void>;
  rename(from: string, to: string): void | Promise<void>;
  chmod(p: string, mode: number): void | Promise<void>;
  /** With O_NOFOLLOW: a link there now is ENOTDIR (O_DIRECTORY) or ELOOP, nothing followed. */
  openDir(p: string): number | Promise<number>;
  fstat(fd: number): Stats | Promise<Stats>;
  /** A listing of the directory open as `fd`, read a batch at a time (Listing). */
  list(fd: number): Listing | Promise<Listing>;
  close(fd: number): void | Promise<void>;
  /** Makes the directory open as `fd` root's and 0700 (TreeRemovalOptions.lock). */
  lock(fd: number): void | Promise<void>;
  /** Makes the entry `p` root's, its last component not followed (TreeRemovalOptions.disown). */
  disown(p: string): void | Promise<void>;
}

export const SYNC_CALLS: Calls = {
  lstat: (p) => lstatSync(p),
  unlink: (p) => unlinkSync(p),
  rmdir: (p) => rmdirSync(p),
  rename: (from, to) => renameSync(from, to),
  chmod: (p, mode) => chmodSync(p, mode),
  openDir: (p) => openSync(p, NOFOLLOW_DIR),
  fstat: (fd) => fstatSync(fd),
  list: (fd) => {
    const dir = opendirSync(`/proc/self/fd/${fd}`, { bufferSize: LIST_BATCH });
    return {
      read: () => {
        const names: string[] = [];
        for (let e; names.length < LIST_BATCH && (e = dir.readSync());) names.push(e.name);
        return names;
      },
      close: () => dir.closeSync(),
    };
  },
  close: (fd) => closeSync(fd),
  lock: (fd) => lockSync(fd),
  disown: (p) => lchownSync(p, 0, 0),
};

/** Makes the directory open as `fd` root's and 0700. */
export function lockSync(fd: number): void {
  fchownSync(fd, 0, 0);
  fchmodSync(fd, 0o700);
}

const openAsync = promisify(open);
const fstatAsync = promisify(fstat);
const closeAsync = promisify(close);
const fchownAsync = promisify(fchown);
const fchmodAsync = promisify(fchmod);
export const ASYNC_CALLS: Calls = {
  lstat: (p) => fsp.lstat(p),
  unlink: (p) => fsp.unlink(p),
  rmdir: (p) => fsp.rmdir(p),
  rename: (from, to) => fsp.rename(from, to),
  chmod: (p, mode) => fsp.chmod(p, mode),
  openDir: (p) => openAsync(p, NOFOLLOW_DIR),
  fstat: (fd) => fstatAsync(fd),
  list: async (fd) => {
    const dir = await fsp.opendir(`/proc/self/fd/${fd}`, { bufferSize: LIST_BATCH });
    return {
      read: async () => {
        const names: string[] = [];
        for (let e; names.length < LIST_BATCH && (e = await dir.read());) names.push(e.name);
        return names;
      },
      close: () => dir.close(),
    };
  },
  close: (fd) => closeAsync(fd),
  lock: async (fd) => {
    await fchownAsync(fd, 0, 0);
    await fchmodAsync(fd, 0o700);
  },
  disown: (p) => fsp.lchown(p, 0, 0),
};
