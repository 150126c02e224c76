import { constants } from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "@fizz/kit";
import { lockDir } from "./lock-dir";
import { ASYNC_CALLS, type Calls } from "./remove-calls";
import { removeTreeNoFollow, TreeRemoval } from "./remove-tree";

// The end of an instance's or a build's directory, once its uid's processes are killed and before
// the uid is given back. A process of another uid the function let in (a 0777 directory), still
// running, can make any removal fail: it only has to create an entry after the listing (rmdir's
// ENOTEMPTY). A failure kept the uid reserved for good, so two colluding tenants drained the pool
// one failure at a time. Now the directory is taken from every uid first and only the removal is
// left for later: the uid goes back.

/**
 * Waits before each later removal once the first failed: doubling from 1 s to 10 min, ~2.7 h in
 * all. A retry locks every directory before listing it (TreeRemovalOptions.lock), so a writer
 * holding a descriptor in the tree (the only one left once the top is locked) cannot keep it
 * non-empty; what would still fail (a writer that outruns the walk by making ever deeper
 * directories, an fs error) is tried again, bounded, and then left root's and 0700: an instance's
 * to the next start's sweep (leftovers.ts), a build's to the operator (logged).
 */
export const RETRY_DELAYS_MS: readonly number[] = [
  ...[1, 2, 4, 8, 16, 32, 64, 128, 256, 512].map((s) => s * 1000),
  ...Array<number>(14).fill(600_000),
];

/**
 * Entries a locking pass looks at at most: a writer of another uid holding a descriptor in the
 * tree can make ever deeper directories of its own ahead of the walk, which must end.
 */
const LOCK_PASS_ENTRIES = 100_000;

export interface RemoveOrLockOptions {
  log: Logger;
  /** What the logs call it: "an instance", "a build". */
  what: string;
  /**
   * Called once a later removal removed `dir` when removeOrLock had said false: the uid it kept
   * reserved may go back then.
   */
  late?: () => void;
  /** RETRY_DELAYS_MS unless given (tests). */
  retryDelaysMs?: readonly number[] | undefined;
  /** The fs calls (remove-calls.ts), a test's own to make one fail. */
  calls?: Calls | undefined;
  /**
   * `dir` is root's and 0700 already (leftovers.ts locks every stale directory before any spawn):
   * whose it was, so its files are still made root's (a second lockDir would say root).
   */
  owner?: number | undefined;
}

/**
 * Removes `dir` (its parent root's: the instances' or builds' directory) without following a link,
 * having first made it root's and 0700 (lockDir), so from then on no uid reaches anything in it by
 * a path: only a process that already holds a descriptor inside (its cwd), and only in
 * directories whose own mode lets it. When that removal fails, a second pass locks every
 * directory before listing it and goes on past failures (lockingPass). True when the uid may be
 * given back: `dir` is gone, or every directory in it is root's and 0700 and the removal goes on
 * later (RETRY_DELAYS_MS). False when neither (not root, the lock failed, or the pass did not
 * end): the uid must stay reserved. Never rejects. Call once the uid's processes are killed.
 */
export async function removeOrLock(dir: string, o: RemoveOrLockOptions): Promise<boolean> {
  // Before the removal, not once it failed: nothing can enter the tree in between, and a writer
  // without a descriptor inside cannot make this removal fail at all.
  let owner = o.owner;
  try {
    owner ??= lockDir(dir);
  } catch (err) {
    o.log.warn({ dir, err: String(err) }, `could not lock ${o.what} directory`);
  }
  const locked = owner !== undefined;
  try {
    // Each directory locked before it is listed (two calls more each), and the owner's files made
    // root's before their unlink (TreeRemovalOptions.disown: a file another uid holds a
    // descriptor of outlives it, and its owner's next tenant could reopen it). A writer of
    // another uid with its cwd inside can then add nothing to a directory being listed, nor swap a
    // name between its lstat and the lchown.
    await removeTreeNoFollow(dir, o.calls ?? ASYNC_CALLS, locked, owner);
    return true;
  } catch (err) {
    o.log.warn({ dir, err: String(err), locked }, `could not remove ${o.what} directory`);
  }
  if (!locked) {
    retryLater(dir, o, 0, true);
    return false;
  }
  // Before the uid goes back, no directory in the tree may still be its: its next holder, given a
  // descriptor of one by the writer (SCM_RIGHTS), could chmod it and read what the last holder
  // kept there. The uid's processes are dead, so no new directory of its appears meanwhile.
  const pass = await lockingPass(dir, owner, o.calls);
  if (pass === "gone") return true;
  // "partial": a writer outran the pass (ever deeper directories of its own): the uid stays
  // reserved until a later pass removes it all, at the latest once that writer is killed.
  retryLater(dir, o, 0, pass === "partial", owner);
  o.log.warn(
    { dir, pass },
    `${o.what} directory is root's and 0700 meanwhile, removed later` +
      (pass === "partial" ? "; its uid stays reserved until then" : ""),
  );
  return pass === "locked";
}

/**
 * Removes `dir`, each directory made root's and 0700 before it is listed (TreeRemovalOptions.lock)
 * and going on past failures, LOCK_PASS_ENTRIES at most: "gone", "locked" (every directory it met
 * locked, some left), or "partial" (it ran out of entries or could not start).
 */
async function lockingPass(
  dir: string,
  disown: number | undefined,
  calls: Calls = ASYNC_CALLS,
): Promise<"gone" | "locked" | "partial"> {
  const failed: string[] = [];
  const removal = new TreeRemoval({
    calls,
    moveUp: true,
    lock: true,
    disown,
    failed,
    budget: { left: LOCK_PASS_ENTRIES },
  });
  try {
    const parent = await open(path.dirname(dir), constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      if (!(await removal.remove(parent.fd, path.basename(dir), dir))) return "partial";
    } finally {
      await parent.close();
    }
  } catch (err) {
    // Its parent gone (a test's work directory removed): so is the tree.
    return (err as NodeJS.ErrnoException).code === "ENOENT" ? "gone" : "partial";
  }
  // A directory it could not lock is still its owner's: the uid must stay reserved.
  if (removal.unlocked > 0) return "partial";
  return failed.length === 0 ? "gone" : "locked";
}

/** `disown`: the uid whose files are made root's before their unlink (lockDir's owner). */
function retryLater(
  dir: string,
  o: RemoveOrLockOptions,
  attempt: number,
  kept: boolean,
  disown?: number,
): void {
  const delays = o.retryDelaysMs ?? RETRY_DELAYS_MS;
  const delay = delays[attempt];
  if (delay === undefined) {
    o.log.error(
      { dir, attempts: attempt + 2 },
      `${o.what} directory could not be removed; left root's and 0700` +
        (kept ? ", its uid reserved" : ""),
    );
    return;
  }
  // Unref'd: a retry keeps no process alive, and close() does not wait for it.
  setTimeout(() => {
    void lockingPass(dir, disown, o.calls).then((pass) => {
      if (pass !== "gone") return retryLater(dir, o, attempt + 1, kept, disown);
      o.log.info({ dir, attempts: attempt + 3 }, `removed ${o.what} directory late`);
      if (kept) o.late?.();
    });
  }, delay).unref();
}
