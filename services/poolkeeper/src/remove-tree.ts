import { randomBytes } from "node:crypto";
import { constants, type Stats } from "node:fs";
import * as fsp from "node:fs/promises";
import path from "node:path";
import { ASYNC_CALLS, at, SYNC_CALLS, type Calls } from "./remove-calls";

// Kept importable from here (uid-files.ts, uids-with-files.ts).
export { at, NOFOLLOW_DIR } from "./remove-calls";

// Deleting a tree that a process of another uid may still write in without following a link
// anywhere: an instance's own directory (removeTreeNoFollow), the stale ones a dead poolkeeper
// left (leftovers.ts) and what an instance uid left in /tmp and the like (uid-files.ts). A leaf
// that imports no other module of the poolkeeper but its fs calls (remove-calls.ts): uid-files.ts
// sits below leftovers.ts (through uid-cleanup.ts), and both walk with this one.

/**
 * Directories open at once at most while removing (one per level) without `moveUp`: a deeper
 * tree is refused (the start-up removal, whose trees are root's and 0700 meanwhile: left for a
 * later start).
 */
const MAX_DEPTH = 1024;
/**
 * With `moveUp`, directories open at once at most: a deeper directory is moved up under the
 * tree's top and emptied by its next pass. Throwing or failing there left the uid reserved (or
 * quarantined) for good, so one mkdir loop per instance drained the pool; and few, because
 * removals of instances ending together run side by side, and 1024 each took the poolkeeper to its
 * descriptor limit (EMFILE for every accept, spawn and clean-up). A deeper tree costs a pass of
 * the top per 64 levels.
 */
const MOVE_DEPTH = 64;

/**
 * What a call acting on an entry fails with when the entry changed kind after its lstat: unlink
 * meets a directory (EISDIR), the open of a directory meets a link or a file (O_NOFOLLOW |
 * O_DIRECTORY: ENOTDIR, ELOOP), the rmdir of one emptied meets a link or a file (ENOTDIR). None
 * followed anything; the entry is looked at again.
 */
const SWAPS = { unlink: ["EISDIR"], openDir: ["ENOTDIR", "ELOOP"], rmdir: ["ENOTDIR"] } as const;
const SWAPPED = Symbol("swapped");
/**
 * Looks at one entry at most: a process that keeps swapping it makes the removal fail after these,
 * not loop (one swapping at random wins a look about half the time: all of them once in 2^31).
 */
const SWAP_LOOKS = 32;

interface TreeRemovalOptions {
  /**
   * "sync": every call on the event loop, in the turns `before` gives (uid-files.ts: each
   * threadpool hop cost more CPU than the call); "async": through libuv's threadpool.
   */
  calls: "sync" | "async" | Calls;
  /** Awaited before each lstat, listing batch and unlink: yields and pacing (uid-files.ts). */
  before?: () => Promise<void>;
  /** Entries looked at at most, directories too, shared by every remove(); then it says false. */
  budget?: { left: number };
  /** A directory past MOVE_DEPTH levels is moved up under the tree's top (else: MAX_DEPTH). */
  moveUp?: boolean;
  /**
   * Given: a failure is added here as "<path>: <code>" and the removal goes on with the rest;
   * otherwise the first one is thrown. An entry gone meanwhile (ENOENT) is no failure (but see
   * failure()).
   */
  failed?: string[];
  /**
   * The uid the top directory must still be of once opened: the owner of the directory it is in
   * can rename in it (a sticky /tmp too), and what it put there is not emptied (a failure).
   */
  owner?: number;
  /**
   * Not root: a directory of this user's that it cannot list or write (chmod 0500, 0000) is made
   * 0700 first, or it would stop the removal, and a move up (which needs write permission on the
   * directory moved). Only where instances run as the poolkeeper's own user: nothing that user
   * had not is gained if a swap makes the chmod follow a link. Root needs none and never chmods.
   */
  chmodOwn?: boolean;
  /**
   * Root only: each directory is made root's and 0700 through its descriptor before it is listed,
   * so a process of another uid that holds a descriptor in it (its cwd) can create nothing there
   * once listed, and its rmdir cannot meet ENOTEMPTY (the retries of remove-or-lock.ts).
   */
  lock?: boolean;
  /**
   * With `lock`, root only: a file, link or socket of this uid is made root's before its unlink.
   * Unlinked, it lives on while a process of another uid holds a descriptor of it (O_PATH needs no
   * permission on the file itself); still the uid's, that uid's next holder, handed the
   * descriptor (SCM_RIGHTS), reopens it through /proc/self/fd as its owner and reads what the last
   * holder kept there (0600). Only with `lock`: its directory is root's and 0700 by then, so no
   * one swaps the name between the lstat and the lchown (another uid's file linked in its place
   * would be taken from that uid).
   */
  disown?: number | undefined;
}

/**
 * Removes trees one entry at a time. Walking by path is not safe: a uid that can write in the
 * tree can swap a directory for a link to / between root's lstat and its readdir, and root then
 * deletes through the link. So each directory is opened with O_NOFOLLOW (a link there: ENOTDIR,
 * nothing done), listed and emptied through its descriptor, and removed by rmdir, which follows
 * no link.
 */
export class TreeRemoval {
  /** Entries unlinked or rmdir'ed. */
  removed = 0;
  /**
   * With `lock`: directories left in the tree that could not be locked (their open, lock or move up
   * failed), so still reachable by their owner and whoever it let in (remove-or-lock.ts keeps the
   * uid then).
   */
  unlocked = 0;
  /** Directories moved up under their tree's top (MOVE_DEPTH): the top needs another pass. */
  private moved = 0;
  private readonly calls: Calls;

  constructor(private readonly opts: TreeRemovalOptions) {
    this.calls =
      opts.calls === "sync" ? SYNC_CALLS : opts.calls === "async" ? ASYNC_CALLS : opts.calls;
  }

  /**
   * Deletes `name` in the open directory `dirFd` and what is under it (`shown`: its path in
   * failures); `st` its lstat when the caller has it. False when the budget ran out first.
   */
  remove(dirFd: number, name: string, shown: string, st?: Stats): Promise<boolean> {
    return this.removeAt(dirFd, name, shown, 0, undefined, st);
  }

  /**
   * Records `err` of `shown` as a failure (`failed`) or throws it. ENOENT is neither, at any
   * call: the entry is gone meanwhile (removed, or renamed away by a process writing in the tree),
   * which is what the removal wanted, and it goes on with the rest. A throwing removal once
   * stopped at a chmod, open or readdir of a subdirectory gone, and removeTreeNoFollow took that
   * ENOENT for its whole tree gone: the rest stayed. The walk goes on through descriptors it holds
   * (nothing reached by a path from above), and whatever took the name is not followed.
   */
  failure(shown: string, err: unknown): void {
    const code = (err as NodeJS.ErrnoException).code;
    const failed = this.opts.failed;
    if (code === "ENOENT") return;
    if (!failed) throw err;
    failed.push(`${shown}: ${code ?? String(err)}`);
  }

  /** `top`: the descriptor of the tree's top directory (depth 0), where a deep one is moved. */
  private async removeAt(
    dirFd: number,
    name: string,
    shown: string,
    depth: number,
    top: number | undefined,
    known?: Stats,
  ): Promise<boolean> {
    const { budget, moveUp } = this.opts;
    if (budget) {
      if (budget.left <= 0) return false;
      budget.left--;
    }
    const c = this.calls;
    const p = at(dirFd, name);
    for (let look = 1; ; look++) {
      // Below the top, a process writing in the tree can swap an entry between its lstat and the
      // call acting on it (nothing followed: SWAPS). That entry is looked at again, SWAP_LOOKS
      // times at most: a failure left the tree, and the uid of an instance's or a build's
      // directory reserved for good, so a second uid let into such trees drained the pool.
      const swaps = depth > 0 && look < SWAP_LOOKS;
      const st = look === 1 && known ? known : await this.call(shown, () => c.lstat(p), true);
      if (!st) return true;
      if (!st.isDirectory()) {
        const { disown, lock } = this.opts;
        if (lock && st.uid === disown && st.uid !== 0 && process.getuid?.() === 0)
          await this.call(shown, () => c.disown(p));
        const unlink = async () => {
          await c.unlink(p);
          return true;
        };
        const unlinked = await this.swappable(shown, unlink, swaps && SWAPS.unlink, true);
        if (unlinked === SWAPPED) continue;
        if (unlinked) this.removed++;
        return true;
      }
      const me = process.getuid?.();
      if (this.opts.chmodOwn && me !== 0 && st.uid === me && (st.mode & 0o700) !== 0o700)
        await this.call(shown, () => c.chmod(p, 0o700));
      if (depth >= (moveUp ? MOVE_DEPTH : MAX_DEPTH)) {
        if (!moveUp || top === undefined) {
          this.refuse(shown, `a directory tree deeper than ${MAX_DEPTH} levels`);
          return true;
        }
        // rename follows no last component (a link swapped in is moved itself, not its target)
        // and stays inside the tree: the top's next pass lists it, MOVE_DEPTH levels less deep.
        // Counted only once moved: a rename that fails must not loop the top.
        const to = at(top, `.fizz-deep-${randomBytes(8).toString("hex")}`);
        const failures = this.opts.failed?.length;
        if (await this.done(shown, () => c.rename(p, to))) this.moved++;
        else this.unlockedIf(failures);
        return true;
      }
      const failures = this.opts.failed?.length;
      const child = await this.swappable(shown, () => c.openDir(p), swaps && SWAPS.openDir);
      if (child === SWAPPED) continue;
      if (child === undefined) {
        this.unlockedIf(failures);
        return true;
      }
      const emptied = await this.empty(child, p, shown, depth, top, swaps);
      if (emptied !== SWAPPED) return emptied;
    }
  }

  /**
   * Empties the directory open as `child` (`p` its path, closed here), then removes it; SWAPPED
   * when `swaps` and its name is no directory by then.
   */
  private async empty(
    child: number,
    p: string,
    shown: string,
    depth: number,
    top: number | undefined,
    swaps: boolean,
  ): Promise<boolean | typeof SWAPPED> {
    const c = this.calls;
    try {
      // The name may now be another directory: only one still the owner's is emptied (its
      // contents are the owner's to decide); the owner's moved away meanwhile is not removed.
      if (
        depth === 0 &&
        this.opts.owner !== undefined &&
        (await c.fstat(child)).uid !== this.opts.owner
      ) {
        this.refuse(shown, "replaced while being removed");
        return true;
      }
      if (
        this.opts.lock &&
        process.getuid?.() === 0 &&
        !(await this.done(shown, () => c.lock(child)))
      )
        this.unlocked++;
      for (;;) {
        const moved = this.moved;
        const listing = await this.call(shown, () => c.list(child));
        if (listing) {
          try {
            for (;;) {
              const names = (await this.call(shown, () => listing.read(), true)) ?? [];
              if (names.length === 0) break;
              for (const inner of names) {
                const ok = await this.removeAt(
                  child,
                  inner,
                  `${shown}/${inner}`,
                  depth + 1,
                  top ?? child,
                );
                if (!ok) return false;
              }
            }
          } finally {
            await listing.close();
          }
        }
        if (depth > 0 || this.moved === moved) break; // at the top: again while moves came
      }
    } finally {
      await c.close(child);
    }
    const rmdir = async () => {
      await c.rmdir(p);
      return true;
    };
    const removed = await this.swappable(shown, rmdir, swaps && SWAPS.rmdir);
    if (removed === SWAPPED) return SWAPPED;
    if (removed) this.removed++;
    return true;
  }

  /** As call, but a failure with one of `swaps`' codes is SWAPPED (neither failed nor thrown). */
  private async swappable<T>(
    shown: string,
    op: () => T | Promise<T>,
    swaps: readonly string[] | false,
    paced = false,
  ): Promise<T | undefined | typeof SWAPPED> {
    let swapped = false;
    const value = await this.call(
      shown,
      async () => {
        try {
          return await op();
        } catch (err) {
          if (!swaps || !swaps.includes((err as NodeJS.ErrnoException).code ?? "")) throw err;
          swapped = true;
          return undefined;
        }
      },
      paced,
    );
    return swapped ? SWAPPED : value;
  }

  /** One call (after `before` when `paced`): its value, or undefined when it failed (failure). */
  private async call<T>(
    shown: string,
    op: () => T | Promise<T>,
    paced = false,
  ): Promise<T | undefined> {
    if (paced) await this.opts.before?.();
    try {
      return await op();
    } catch (err) {
      this.failure(shown, err);
      return undefined;
    }
  }

  /** One call without a value (as call): whether it was done. */
  private async done(shown: string, op: () => unknown, paced = false): Promise<boolean> {
    const ok = await this.call(
      shown,
      async () => {
        await op();
        return true;
      },
      paced,
    );
    return ok === true;
  }

  /** Counts a directory left unlocked when a failure was recorded since `failures` (not ENOENT). */
  private unlockedIf(failures: number | undefined): void {
    if (this.opts.lock && (this.opts.failed?.length ?? 0) > (failures ?? 0)) this.unlocked++;
  }

  /** A failure that is no fs call's: recorded as "<path>: <what>", or thrown as `what`. */
  private refuse(shown: string, what: string): void {
    if (!this.opts.failed) throw new Error(what);
    this.opts.failed.push(`${shown}: ${what}`);
  }
}

/**
 * Deletes the directory `dir` and what is under it without following a link anywhere, even while
 * a process that can write in the tree renames and swaps its entries (TreeRemoval). For an
 * instance's (or a build's) own directory once its processes are gone, in place of fs.rm, which
 * walks by path: another uid the function let in (a 0777 directory) can still be running then.
 * What is gone already, `dir` or anything under it, is no error (as rm's force); any other
 * failure is thrown at once. `calls`: the fs calls, a test's own to act between two of them.
 * `lock`, `disown`: TreeRemovalOptions'.
 */
export async function removeTreeNoFollow(
  dir: string,
  calls: Calls = ASYNC_CALLS,
  lock = false,
  disown?: number,
): Promise<void> {
  // The operator's path may be a link; what is under it is walked through descriptors only.
  const parent = await fsp.open(path.dirname(dir), constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    const removal = new TreeRemoval({ calls, moveUp: true, chmodOwn: true, lock, disown });
    await removal.remove(parent.fd, path.basename(dir), dir);
  } finally {
    await parent.close();
  }
}
