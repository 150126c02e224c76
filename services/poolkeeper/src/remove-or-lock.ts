import type { Logger } from "@fizz/kit";
import { ASYNC_CALLS, lockDir, removeTreeNoFollow } from "./remove-tree";

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

export interface RemoveOrLockOptions {
  log: Logger;
  /** What the logs call it: "instance" or "build". */
  what: string;
  /** RETRY_DELAYS_MS unless given (tests). */
  retryDelaysMs?: readonly number[] | undefined;
}

/**
 * Removes `dir` (its parent root's: the instances' or builds' directory) without following a link,
 * having first made it root's and 0700 (lockDir), so from then on no uid reaches anything in it by
 * a path: only a process that already holds a descriptor inside (its cwd), and only in
 * directories whose own mode lets it. True when the uid may be given back: `dir` is gone, or it is
 * locked and its removal goes on later (RETRY_DELAYS_MS); the next holder of the uid cannot reach
 * it. False when neither (not root, so nothing to lock, or the lock itself failed): the uid must
 * stay reserved. Never rejects.
 */
export async function removeOrLock(dir: string, o: RemoveOrLockOptions): Promise<boolean> {
  // Before the removal, not once it failed: nothing can enter the tree in between, and a writer
  // without a descriptor inside cannot make this removal fail at all.
  let locked: boolean;
  try {
    locked = lockDir(dir) !== undefined;
  } catch (err) {
    o.log.warn({ dir, err: String(err) }, `could not lock an ${o.what} directory`);
    locked = false;
  }
  try {
    await removeTreeNoFollow(dir);
    return true;
  } catch (err) {
    o.log.warn(
      { dir, err: String(err), locked },
      locked
        ? `could not remove an ${o.what} directory; it is root's and 0700 meanwhile and removed later`
        : `could not remove an ${o.what} directory`,
    );
    retryLater(dir, o, 0);
    return locked;
  }
}

function retryLater(dir: string, o: RemoveOrLockOptions, attempt: number): void {
  const delays = o.retryDelaysMs ?? RETRY_DELAYS_MS;
  const delay = delays[attempt];
  if (delay === undefined) {
    o.log.error(
      { dir, attempts: attempt + 1 },
      `an ${o.what} directory could not be removed; left root's and 0700`,
    );
    return;
  }
  // Unref'd: a retry keeps no process alive, and close() does not wait for it.
  setTimeout(() => {
    removeTreeNoFollow(dir, ASYNC_CALLS, true).then(
      () => o.log.info({ dir, attempts: attempt + 2 }, `removed an ${o.what} directory late`),
      (err: unknown) => {
        // Its parent gone (a test's work directory removed): so is the tree.
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
        retryLater(dir, o, attempt + 1);
      },
    );
  }, delay).unref();
}
