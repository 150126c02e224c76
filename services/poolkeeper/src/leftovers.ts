import { constants, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { lstat, open } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "@fizz/kit";
import { ownerAlive, ownerToken, type IsolationOptions, type UidPool } from "./isolation";
import { lockDir } from "./lock-dir";
import { at } from "./remove-calls";
import { TreeRemoval } from "./remove-tree";
import { killUid, uidsWithProcesses } from "./uid-cleanup";
import { uidsWithFiles } from "./uids-with-files";

/**
 * What a poolkeeper that died without closing (kill -9, a crash, the host's OOM killer) left for
 * the next one on the same work directory and uid range: instance directories under
 * `<workDir>/instances`, and processes of pool uids whose claims lapsed with it.
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
}): { held: Promise<void>; done: Promise<void> } {
  const { uids, log } = opts;
  const stale = ownWorkDir(path.dirname(opts.instancesDir), log)
    ? staleInstanceNames(opts.instancesDir)
    : [];
  const owners = lockAway(opts.instancesDir, stale);
  const held = (uids ? holdLeftoverUids(uids.pool, uids) : Promise.resolve([])).catch(
    (err: unknown) => {
      log.warn({ err: String(err) }, "could not look for leftover processes of pool uids");
      return [];
    },
  );
  const done = (async () => {
    if (uids) await cleanLeftoverUids(uids.pool, await held, opts.isolation, log);
    await removeStaleInstanceDirs(opts.instancesDir, stale, {
      owners,
      keep: opts.keep,
      quarantined: uids?.pool.quarantined ?? [],
      log,
    });
  })().catch((err: unknown) => log.warn({ err: String(err) }, "start-up clean-up failed"));
  return { held: held.then(() => undefined), done };
}

/**
 * Filesystem entries the start-up removal deletes at most (about as many syscalls): a function can
 * leave millions of files, and the removal runs beside the first cold starts on the same disk and
 * thread pool. What is left over is logged and removed by the next start.
 */
const SWEEP_ENTRIES = 100_000;

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
 * The names under `instancesDir` now, read once, synchronously, before this poolkeeper starts any
 * instance: every one is a dead poolkeeper's, and an instance started later has a fresh random
 * name that this list cannot hold.
 */
function staleInstanceNames(instancesDir: string): string[] {
  try {
    return readdirSync(instancesDir);
  } catch {
    return []; // no such directory yet: a first start
  }
}

/**
 * As root, makes each stale directory root's and 0700 at once, before any spawn, and returns
 * whose each was. Its uid is handed out again right after the start-up scan, maybe to another
 * tenant, and the removal takes a while or leaves a tree for a later start (SWEEP_ENTRIES, the
 * depth remove-tree.ts refuses): the new instance must not reach what the dead one left. Through
 * a descriptor opened with O_NOFOLLOW: a link there is left to the removal, which unlinks it.
 */
function lockAway(instancesDir: string, names: string[]): Map<string, number> {
  const owners = new Map<string, number>();
  for (const name of names) {
    try {
      const owner = lockDir(path.join(instancesDir, name));
      if (owner !== undefined) owners.set(name, owner);
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
): Promise<number[]> {
  // Files a dead instance left in /tmp and the like count as much as processes: its uid may go
  // to another tenant next (killUid removes both). Both scans are synchronous in small batches.
  const [running, owning] = await Promise.all([
    uidsWithProcesses(range.base, range.count),
    uidsWithFiles(range.base, range.count),
  ]);
  return [...new Set([...running, ...owning])].filter((uid) => pool.hold(uid));
}

async function cleanLeftoverUids(
  pool: UidPool,
  held: number[],
  isolation: IsolationOptions,
  log: Logger,
): Promise<void> {
  for (const uid of held) {
    const kill = await killUid(uid, isolation.setpriv, isolation.killBound);
    if (pool.giveBack(uid, kill)) {
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
 * Removes the stale instance directories `names` (staleInstanceNames) but those `keep` says are
 * live, without following a link anywhere (a link is removed, not its target) and leaving the
 * directories of quarantined uids (a process of the uid still runs and could swap a directory for
 * a link between the check and the removal). Call after cleanLeftoverUids, for the same reason.
 */
async function removeStaleInstanceDirs(
  instancesDir: string,
  names: string[],
  opts: {
    /** Whose each directory was before lockAway made it root's. */
    owners: Map<string, number>;
    keep: (name: string) => boolean;
    quarantined: number[];
    log: Logger;
  },
): Promise<void> {
  if (names.length === 0) return;
  // A failure ends that directory's removal (logged below), and a tree too deep is refused, not
  // moved up: these are root's and 0700 meanwhile, left for a later start.
  const removal = new TreeRemoval({
    calls: "async",
    budget: { left: SWEEP_ENTRIES },
    chmodOwn: true,
  });
  let removed = 0;
  // The operator's path may be a link; what is under it is walked through descriptors only.
  const top = await open(instancesDir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    for (const name of names) {
      if (opts.keep(name)) continue;
      const dir = path.join(instancesDir, name);
      try {
        const uid = opts.owners.get(name) ?? (await lstat(at(top.fd, name))).uid;
        if (opts.quarantined.includes(uid)) {
          opts.log.warn({ dir, uid }, "left a stale instance directory of a quarantined uid");
          continue;
        }
        if (!(await removal.remove(top.fd, name, dir))) {
          opts.log.warn(
            { dir, entries: SWEEP_ENTRIES },
            "stale instance directories only partly removed; the next start goes on",
          );
          return;
        }
        removed++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
        opts.log.warn({ dir, err: String(err) }, "could not remove a stale instance directory");
      }
    }
  } finally {
    await top.close();
  }
  if (removed > 0)
    opts.log.info({ removed }, "removed instance directories a previous poolkeeper left");
}
