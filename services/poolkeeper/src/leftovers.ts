import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { chmod, lstat, readdir, rmdir, unlink } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "@fizz/kit";
import { pidAlive, type IsolationOptions, type UidPool } from "./isolation";
import { killUid, uidsWithProcesses } from "./uid-cleanup";

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
  const held = (uids ? holdLeftoverUids(uids.pool, uids) : Promise.resolve([])).catch(
    (err: unknown) => {
      log.warn({ err: String(err) }, "could not look for leftover processes of pool uids");
      return [];
    },
  );
  const done = (async () => {
    if (uids) await cleanLeftoverUids(uids.pool, await held, opts.isolation, log);
    await removeStaleInstanceDirs(opts.instancesDir, stale, {
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
 * names this process. A dead owner's pid reused by another process only skips one sweep.
 */
function ownWorkDir(workDir: string, log: Logger): boolean {
  const file = path.join(workDir, "poolkeeper.pid");
  try {
    const owner = Number(readFileSync(file, "utf8"));
    if (pidAlive(owner)) {
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
    writeFileSync(file, String(process.pid), { mode: 0o600 });
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
 * Finds the pool uids with processes and holds each this poolkeeper can claim (UidPool.hold), so
 * none is handed out before its clean-up. Resolves once they are held (spawns wait for that);
 * `cleaned` then kills their processes and gives each back, or quarantines it.
 */
async function holdLeftoverUids(
  pool: UidPool,
  range: { base: number; count: number },
): Promise<number[]> {
  const found = await uidsWithProcesses(range.base, range.count);
  return [...found].filter((uid) => pool.hold(uid));
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
        { uid, left: kill.left },
        "processes a previous poolkeeper's instance left survived every kill; the uid is quarantined",
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
  opts: { keep: (name: string) => boolean; quarantined: number[]; log: Logger },
): Promise<void> {
  const budget = { left: SWEEP_ENTRIES };
  let removed = 0;
  for (const name of names) {
    if (opts.keep(name)) continue;
    const dir = path.join(instancesDir, name);
    try {
      const st = await lstat(dir);
      if (opts.quarantined.includes(st.uid)) {
        opts.log.warn({ dir, uid: st.uid }, "left a stale instance directory of a quarantined uid");
        continue;
      }
      if (!(await removeTree(dir, budget))) {
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
  if (removed > 0)
    opts.log.info({ removed }, "removed instance directories a previous poolkeeper left");
}

/**
 * Deletes `p` and what is under it, one entry at a time, never following a link: lstat says what
 * an entry is, and a link or file is unlinked (root may unlink any uid's files). False when the
 * budget ran out first.
 */
async function removeTree(p: string, budget: { left: number }): Promise<boolean> {
  if (budget.left <= 0) return false;
  budget.left--;
  const st = await lstat(p);
  if (!st.isDirectory()) {
    await unlink(p);
    return true;
  }
  // A directory the function made unreadable or read-only (chmod 0500) stops a removal without
  // CAP_DAC_OVERRIDE: when instances ran as the poolkeeper's own user. Only our own directories
  // are changed, so a swap for a link (a chmod follows it) gains nothing that user had not.
  if ((st.mode & 0o700) !== 0o700 && st.uid === process.getuid?.()) await chmod(p, 0o700);
  const names = await readdir(p);
  for (const name of names) if (!(await removeTree(path.join(p, name), budget))) return false;
  await rmdir(p);
  return true;
}
