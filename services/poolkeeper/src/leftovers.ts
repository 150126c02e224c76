import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { lstat } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "@fizz/kit";
import { ownerAlive, ownerToken, type IsolationOptions, type UidPool } from "./isolation";
import { lockDir } from "./lock-dir";
import { removeOrLock } from "./remove-or-lock";
import { killUid, uidsWithProcesses } from "./uid-cleanup";
import { uidsWithFiles } from "./uids-with-files";

/**
 * What a poolkeeper that died without closing (kill -9, a crash, the host's OOM killer) left for
 * the next one on the same work directory and uid range: instance directories under
 * `<workDir>/instances` (and build directories under the builds' directory when it is in the work
 * directory: a crashed build's, or one whose later removal a restart cut short), and processes of
 * pool uids whose claims lapsed with it.
 */

/**
 * Starts the clean-up. `held` resolves once the pool uids with processes are held (a spawn waits
 * for it, so none is handed out before its clean-up: one /proc scan, milliseconds); `done` once
 * they are emptied or quarantined and then the stale directories removed, so no process of their
 * owner runs while root walks them. Neither rejects: what fails is logged.
 */
export function sweepLeftovers(opts: {
  instancesDir: string;
  uids: { pool: UidPool; base: number; count: number } | undefined;
  isolation: IsolationOptions;
  /** Names of live instances (never removed, though none can be among the names read now). */
  keep: (name: string) => boolean;
  log: Logger;
  /** removeOrLock's retries of a stale directory it could not remove at once (tests). */
  removalRetryMs?: readonly number[] | undefined;
  /**
   * The builds' directory: its build directories are swept as the instances' are, but only when
   * it is in the same work directory (whose claim, poolkeeper.pid, says no live poolkeeper uses
   * them). Its names are read now: call before this poolkeeper starts any build.
   */
  buildsDir?: string | undefined;
}): { held: Promise<void>; done: Promise<void> } {
  const { uids, log } = opts;
  const workDir = path.dirname(opts.instancesDir);
  const roots = [opts.instancesDir];
  const b = opts.buildsDir;
  if (b !== undefined && path.resolve(path.dirname(b)) === path.resolve(workDir)) {
    // The archives' folder (build/index.ts: root's, a fixed name) is this poolkeeper's builds'
    // too: only the archives in it now are stale. (Builds in the instances' folder: swept once.)
    if (path.resolve(b) !== path.resolve(opts.instancesDir)) roots.push(b, path.join(b, ARCHIVES));
  }
  const stale = ownWorkDir(workDir, log)
    ? roots.flatMap(staleDirs).filter((p) => path.basename(p) !== ARCHIVES)
    : [];
  const owners = lockAway(stale);
  // Only the top of each is locked yet: below it, what the dead instance left is still its uid's,
  // and a process of another uid holding a descriptor inside could pass one to that uid's next
  // holder. So the uid is held, before any spawn, until its tree is gone or locked whole.
  const dirUids = uids ? holdDirUids(uids, owners) : new UidCounts(undefined);
  const held = (uids ? holdLeftoverUids(uids.pool, uids, dirUids) : Promise.resolve([])).catch(
    (err: unknown) => {
      log.warn({ err: String(err) }, "could not look for leftover processes of pool uids");
      return [];
    },
  );
  const done = (async () => {
    if (uids) await cleanLeftoverUids(uids.pool, await held, dirUids, opts.isolation, log);
    await removeStaleDirs(stale, {
      owners,
      dirUids,
      keep: opts.keep,
      quarantined: uids?.pool.quarantined ?? [],
      retryDelaysMs: opts.removalRetryMs,
      log,
    });
  })().catch((err: unknown) => log.warn({ err: String(err) }, "start-up clean-up failed"));
  return { held: held.then(() => undefined), done };
}

/** Where builds keep their archives in transit, under the builds' directory (build/index.ts). */
const ARCHIVES = ".archives";

/** Pool uids held for their stale directories: how many of them each still has. */
class UidCounts {
  private readonly counts = new Map<number, number>();
  constructor(private readonly pool: UidPool | undefined) {}
  add(uid: number): void {
    this.counts.set(uid, (this.counts.get(uid) ?? 0) + 1);
  }
  has(uid: number): boolean {
    return this.counts.has(uid);
  }
  /** One directory of `uid` done with (gone or locked whole): the last gives the uid back. */
  done(uid: number | undefined): void {
    if (uid === undefined) return;
    const left = (this.counts.get(uid) ?? 0) - 1;
    if (left > 0) return void this.counts.set(uid, left);
    if (!this.counts.delete(uid)) return;
    this.pool?.release(uid); // a no-op for one quarantined meanwhile
  }
}

/** Holds the pool uids that own a stale directory (lockAway's `owners`). */
function holdDirUids(
  range: { pool: UidPool; base: number; count: number },
  owners: Map<string, number>,
): UidCounts {
  const counts = new UidCounts(range.pool);
  for (const uid of owners.values()) {
    if (uid < range.base || uid >= range.base + range.count) continue;
    // Held already (a second directory of it), or claimed by a live poolkeeper (then not ours).
    if (counts.has(uid) || range.pool.hold(uid)) counts.add(uid);
  }
  return counts;
}

/**
 * Whether no other live poolkeeper (nor another backend of this process: tests) uses `workDir`,
 * whose instance directories would otherwise look stale here; then `<workDir>/poolkeeper.pid`
 * names this process (ownerToken: pid and start time, so a dead owner's pid taken by another
 * process, or by this one after a container restart, is not mistaken for a live owner).
 */
function ownWorkDir(workDir: string, log: Logger): boolean {
  const file = path.join(workDir, "poolkeeper.pid");
  try {
    const owner = readFileSync(file, "utf8");
    if (ownerAlive(owner)) {
      log.warn(
        { workDir, owner },
        "another live poolkeeper uses this work directory; its instance directories are left alone",
      );
      return false;
    }
  } catch {
    // none yet
  }
  try {
    mkdirSync(workDir, { recursive: true, mode: 0o711 });
    writeFileSync(file, ownerToken(), { mode: 0o600 });
    return true;
  } catch (err) {
    log.warn(
      { workDir, err: String(err) },
      "cannot claim the work directory; stale instance directories are left",
    );
    return false;
  }
}

/**
 * The paths under `root` (the instances' or the builds' directory) now, read once, synchronously,
 * before this poolkeeper starts any instance or build: every one is a dead poolkeeper's, and an
 * instance or build started later has a fresh random name that this list cannot hold.
 */
function staleDirs(root: string): string[] {
  try {
    return readdirSync(root).map((name) => path.join(root, name));
  } catch {
    return []; // no such directory yet: a first start
  }
}

/**
 * As root, makes each stale directory root's and 0700 at once, before any spawn, and returns
 * whose each was: no uid reaches anything in it by a path from then on. Its uid, if a pool one,
 * stays held until the removal (removeOrLock) has removed or locked the whole tree (holdDirUids).
 * Through a descriptor opened with O_NOFOLLOW: a link there is left to the removal, which unlinks
 * it.
 */
function lockAway(dirs: string[]): Map<string, number> {
  const owners = new Map<string, number>();
  for (const dir of dirs) {
    try {
      const owner = lockDir(dir);
      if (owner !== undefined) owners.set(dir, owner);
    } catch {
      // an fs failure: the removal sees to it (and fails there, logged)
    }
  }
  return owners;
}

/**
 * Finds the pool uids with processes and holds each this poolkeeper can claim (UidPool.hold), so
 * none is handed out before its clean-up. Resolves once they are held (spawns wait for that);
 * `cleaned` then kills their processes and gives each back, or quarantines it.
 */
async function holdLeftoverUids(
  pool: UidPool,
  range: { base: number; count: number },
  dirUids: UidCounts,
): Promise<number[]> {
  // Files a dead instance left in /tmp and the like count as much as processes: its uid may go
  // to another tenant next (killUid removes both). Both scans are synchronous in small batches.
  const [running, owning] = await Promise.all([
    uidsWithProcesses(range.base, range.count),
    uidsWithFiles(range.base, range.count),
  ]);
  // Those held for a stale directory are this poolkeeper's to empty too.
  return [...new Set([...running, ...owning])].filter((uid) => dirUids.has(uid) || pool.hold(uid));
}

async function cleanLeftoverUids(
  pool: UidPool,
  held: number[],
  dirUids: UidCounts,
  isolation: IsolationOptions,
  log: Logger,
): Promise<void> {
  for (const uid of held) {
    const kill = await killUid(uid, isolation, isolation.killBound);
    // Emptied, but with a stale directory: given back once that is gone or locked whole.
    if (kill.left === 0 && dirUids.has(uid)) {
      log.warn(
        { uid, killed: kill.killed },
        "killed processes a previous poolkeeper's instance left",
      );
    } else if (pool.giveBack(uid, kill)) {
      log.warn(
        { uid, killed: kill.killed },
        "killed processes a previous poolkeeper's instance left",
      );
    } else {
      log.error(
        { uid, left: kill.left, unremoved: kill.unremoved },
        "what a previous poolkeeper's instance left (processes, or files: unremoved) could not all be removed; the uid is quarantined",
      );
    }
  }
}

/**
 * Removes the stale instance and build directories `dirs` (staleDirs) but those `keep` says are
 * live, as an instance's own (removeOrLock: each directory locked before it is listed, the uid's
 * files made root's before their unlink, a failure retried later), and leaving the directories of
 * quarantined uids (a process of the uid still runs and could swap a directory for a link between
 * the check and the removal). Each held uid goes back once its trees are gone or locked whole.
 * Call after cleanLeftoverUids, for the same reason. One at a time: it runs beside the first cold
 * starts on the same disk and thread pool.
 */
async function removeStaleDirs(
  dirs: string[],
  opts: {
    /** Whose each directory was before lockAway made it root's. */
    owners: Map<string, number>;
    dirUids: UidCounts;
    keep: (name: string) => boolean;
    quarantined: number[];
    retryDelaysMs: readonly number[] | undefined;
    log: Logger;
  },
): Promise<void> {
  let removed = 0;
  for (const dir of dirs) {
    const owner = opts.owners.get(dir);
    if (opts.keep(path.basename(dir))) {
      opts.dirUids.done(owner);
      continue;
    }
    let uid = owner;
    try {
      uid ??= (await lstat(dir)).uid;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      opts.log.warn({ dir, err: String(err) }, "could not remove a stale instance directory");
      continue;
    }
    if (opts.quarantined.includes(uid)) {
      opts.log.warn({ dir, uid }, "left a stale instance directory of a quarantined uid");
      continue;
    }
    const out = await removeOrLock(dir, {
      log: opts.log,
      what: "a stale instance",
      owner,
      retryDelaysMs: opts.retryDelaysMs,
      late: () => opts.dirUids.done(owner),
    });
    if (out) {
      opts.dirUids.done(owner);
      removed++;
    }
  }
  if (removed > 0)
    opts.log.info({ removed }, "removed instance directories a previous poolkeeper left");
}
