import { closeSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { spawn } from "node:child_process";
import { INSTANCE_PATH } from "./instance-launch";
import { removeUidFiles, type UidFilesOptions } from "./uid-files";

// Emptying an instance uid before it is reused (docs/security.md). A leaf: isolation.ts imports
// its types and re-exports the kill, so nothing here may import isolation.ts.

/**
 * How many /proc entries the scan reads between two turns of the event loop. The reads are
 * synchronous: an async readFile of a /proc file (open, fstat, read, read, close, each a threadpool
 * hop and a promise) cost ~0.3-0.6 ms of CPU per process, 35-85 ms per clean-up on a host with
 * ~130 processes, next to the cold starts on the same cores; a synchronous read costs ~0.03 ms.
 * A batch of 32 holds the loop ~1 ms at most.
 */
const SCAN_BATCH = 32;

/** What a clean-up of a uid did: processes it SIGKILLed, and live ones still left at its bound. */
export interface UidKill {
  killed: number;
  left: number;
  /** What the uid left outside its directory that could not be removed (counted in `left`). */
  unremoved?: string[];
}

/**
 * How long the root-side rounds may go on. Each round is a full /proc scan (~4 ms of CPU at ~130
 * processes); only a uid whose processes keep forking needs more than one.
 */
export interface KillBound {
  rounds: number;
  ms: number;
}
const KILL_BOUND: KillBound = { rounds: 500, ms: 3000 };

/**
 * How killUid's first pass runs. `shieldedKill`: with the target uid as its effective uid only
 * (runtimes/spawner/fizzspawn/killpass.py), forked by the spawner (`forkPass`) or, without one,
 * its own interpreter; `setpriv`: as the uid itself, when there is no interpreter (or it failed).
 * A bare string is a setpriv path.
 */
export type KillPass =
  | {
      setpriv?: string | undefined;
      shieldedKill?: ShieldedKill | undefined;
      forkPass?: ForkPass | undefined;
    }
  | string
  | undefined;

/**
 * Runs the shielded pass in a fork of the spawner (Spawner.killPass): its exit code, or undefined
 * when it did not signal and cannot any more (refused, died, failed before its signals, past its
 * deadline, or not answered in time; the pass then runs in an interpreter of its own). Per
 * clean-up, that saves a fork of the poolkeeper, which holds its event loop 5-27 ms (the cold
 * starts behind it wait), and a Python start, ~15 ms of CPU.
 */
export type ForkPass = (ruid: number, uid: number, lock: string) => Promise<number | undefined>;

/**
 * `script`: runtimes/spawner/fizz_spawner.py, whose `--kill-pass` runs the pass (fizzspawn/killpass.py).
 * `ruid`: the kill pass's own real and saved uid. It must be a uid no process on the host runs as:
 * the pass reaches every process whose real or saved uid is `ruid` or the target's (config.ts
 * takes the uid just below the pool's range, docs/security.md). `lock`: a root-only file that
 * every pass on the host holds (flock) from before its uid switch until it exits, so no two
 * passes ever run as `ruid` at once (config.ts: in the uid lock directory, shared by the host's
 * poolkeepers); undefined: none (tests).
 */
export interface ShieldedKill {
  python: string;
  script: string;
  ruid: number;
  lock?: string | undefined;
}

/**
 * SIGKILLs every process running as `uid`: what an instance left behind outside its process group
 * (a daemon that called setsid) must not live on to read the next instance given that uid.
 *
 * The first pass signals `-1` twice with the uid as its effective uid: the kernel signals every
 * process the sender may signal in one pass under the task-list lock, so neither a fork loop nor a
 * process that hid its /proc entry (prctl PR_SET_DUMPABLE 0 makes /proc/<pid> root-owned)
 * escapes. It runs as real and saved uid `shieldedKill.ruid` (killpass.py): a process may signal
 * another only when its real or effective uid is the other's real or saved uid, so the uid's
 * processes cannot kill the pass before it signals, which a leftover looping `kill(-1, SIGKILL)`
 * otherwise does (then only the scan below is left, and a process hopping to a new pid between a
 * listing and its check can pass it). Without an interpreter the
 * pass runs as the uid itself through setpriv (which copies the effective uid to the saved one).
 * The pass's code is fixed (killpass.py, beside the spawner, loaded as the spawner loads its own);
 * it is given two numbers and the lock's path, nothing of the instance, and no environment of the
 * poolkeeper's (its NATS and Redis credentials): the spawner, which forks it, runs with PATH and
 * LANG only, and an interpreter started for it with PATH only.
 *
 * Then root scans /proc, matching the real, effective and saved uids in /proc/<pid>/status (not
 * the directory's owner, which a non-dumpable process changes), and SIGKILLs what it finds, which
 * nothing of the uid can block or answer. A process forked after the listing escapes a listing,
 * so each scan chases the new pids (scanRound) and the scans repeat until one finds nothing alive.
 * Nothing left is the common case and costs one scan and one more readdir. At the bound, `left`
 * counts what is still alive: the caller must not hand the uid out again (UidPool.giveBack). With
 * none left, what the uid left in world-writable places and its SysV IPC objects are removed; what
 * cannot be is counted in `left`.
 */
export async function killUid(
  uid: number,
  pass: KillPass,
  bound: KillBound = KILL_BOUND,
  files?: UidFilesOptions,
): Promise<UidKill> {
  const kill = await killProcesses(uid, pass, bound);
  // Files and IPC objects only once no process of the uid is left: a live one could create
  // entries behind the scan or swap its own for links while they are removed (uid-files.ts).
  if (kill.left > 0) return kill;
  // What could not be removed keeps the uid from the next tenant as a live process would.
  const { failed } = await removeUidFiles(uid, files);
  return failed.length === 0 ? kill : { ...kill, left: failed.length, unremoved: failed };
}

/*
 * The shielded pass itself (runtimes/spawner/fizzspawn/killpass.py; argv: ruid, uid, lock or ""):
 * groups first, while still root; setresuid(ruid, uid, ruid) leaves no capability, so CAP_KILL is
 * gone and the kernel's uid rule alone decides whom kill(-1) reaches: processes whose real or saved
 * uid is `uid` or `ruid`. Exit 3: the uid switch failed (e.g. `ruid` unmapped in a user namespace),
 * and the setpriv pass runs instead. Exit 4: a capability is still effective (or that cannot be
 * read): with SECBIT_NO_SETUID_FIXUP inherited (a unit's `SecureBits=no-setuid-fixup`) the switch
 * keeps root's, and kill(-1) with CAP_KILL would SIGKILL every process on the host; the setpriv
 * pass execs, which drops them. The change of credentials also makes the pass non-dumpable: the
 * uid's processes cannot trace it or read its /proc files either.
 *
 * `ruid` is every pass's, so a pass reaches any other pass that has switched and not yet exited:
 * clean-ups at once (instances that exit together, which colluding tenants can arrange) killed
 * each other, ~1 pass in 4 of 8 at once, ~1 in 600 before it signalled, which left its uid to the
 * setpriv pass the uid can kill. So each pass takes the lock (flock, held by its descriptor until
 * exit; a process is past signals once it has begun to exit) before it switches. At most 2 s: a
 * holder cannot be stopped by any instance uid, but a lock never granted must not hold every
 * clean-up (and with it the pool's uids) forever; without it the pass still runs.
 */

/** Runs argv with no environment but PATH; resolves with its exit code (undefined: no start). */
function run(argv: [string, ...string[]]): Promise<number | null | undefined> {
  return new Promise((resolve) => {
    const k = spawn(argv[0], argv.slice(1), { stdio: "ignore", env: { PATH: INSTANCE_PATH } });
    k.once("exit", (code) => resolve(code));
    k.once("error", () => resolve(undefined));
  });
}

/** The first pass (see killUid): shielded when it can be, else as the uid through setpriv. */
async function killPass(uid: number, pass: KillPass): Promise<void> {
  const { setpriv, shieldedKill, forkPass } =
    typeof pass === "string" ? { setpriv: pass, forkPass: undefined } : (pass ?? {});
  if (shieldedKill) {
    const { python, script, ruid } = shieldedKill;
    const lock = shieldedKill.lock ?? "";
    const code =
      (await forkPass?.(ruid, uid, lock)) ??
      (await run([python, "-I", "-S", script, "--kill-pass", String(ruid), String(uid), lock]));
    if (code === 0) return;
  }
  // Its exit status says nothing useful (kill answers 1 even after signalling).
  if (setpriv)
    await run([
      setpriv,
      `--reuid=${uid}`,
      `--regid=${uid}`,
      "--clear-groups",
      "--",
      "sh",
      "-c",
      "kill -KILL -1; kill -KILL -1",
    ]);
}

/** killUid's first part: the uid's processes (see there). */
async function killProcesses(uid: number, pass: KillPass, bound: KillBound): Promise<UidKill> {
  await killPass(uid, pass);
  const started = Date.now();
  let killed = 0;
  let waits = 0;
  for (let round = 0; ; round++) {
    const found = await scanRound(uid, round < bound.rounds && Date.now() - started <= bound.ms);
    if (found === undefined) return { killed, left: 0 }; // no procfs: nothing to scan
    killed += found.signalled;
    if (found.alive === 0) return { killed, left: 0 };
    if (round >= bound.rounds || Date.now() - started > bound.ms)
      return { killed, left: found.alive };
    // Only dying ones left (SIGKILL already pending): give them a moment to exit, longer each
    // time (one stuck in the kernel must not cost a scan every 2 ms for the whole bound).
    if (found.signalled === 0)
      await new Promise((r) => setTimeout(r, Math.min(100, 2 ** Math.min(++waits, 7))));
  }
}

/**
 * One full scan, newest pid first, then the processes that appeared since: `alive` processes of
 * the uid (not zombies), of which `signalled` were SIGKILLed now (`kill` false: none, the count
 * only). Undefined without procfs.
 *
 * Why the second part: a process that forks and exits between the listing and its turn has moved
 * to a pid the listing lacks, and one empty scan would wrongly say the uid is empty. So /proc is
 * listed again after each check, and only its new pids are checked, until a listing shows none.
 * A listing whose new pids hold none of the uid's does not prove the uid empty: a process listed
 * alive may fork and exit between the listing and its check (gone, it is not counted), and its
 * child is in no listing yet. Each further listing gives such a hopper another check it must slip
 * past the same way, so the chase ends only after QUIET_LISTINGS such listings in a row, each
 * costing one readdir (~0.1 ms) when nothing was left. That narrows the window, it does not close
 * it: the kill pass, which the uid cannot stop (killUid), is what does. New pids of other uids do
 * not count: their churn must not make an empty uid look unsure.
 */
async function scanRound(
  uid: number,
  kill: boolean,
): Promise<{ alive: number; signalled: number } | undefined> {
  const counts = { alive: 0, signalled: 0 };
  const seen = new Set<number>();
  let inBatch = 0;
  let quiet = 0;
  for (let pass = 0; pass < CHASE_PASSES; pass++) {
    let entries: string[];
    try {
      entries = readdirSync("/proc");
    } catch (err) {
      // No procfs: nothing to scan. Any other failure (EMFILE, ENOMEM) says nothing of the uid:
      // counted as one left, so the uid is not handed out on a listing that never happened.
      if (pass === 0 && gone(err)) return undefined;
      return { ...counts, alive: counts.alive + 1 };
    }
    const fresh: number[] = [];
    for (const name of entries) {
      if (!/^[0-9]+$/.test(name)) continue;
      const pid = Number(name);
      if (!seen.has(pid)) fresh.push(pid);
    }
    fresh.sort((x, y) => y - x);
    const before = counts.alive;
    for (const pid of fresh) {
      seen.add(pid);
      if (++inBatch > SCAN_BATCH) {
        inBatch = 1;
        await new Promise((r) => setImmediate(r));
      }
      check(pid, uid, kill, counts);
    }
    // Only the uid's own new processes keep the chase going: anyone else's churn (another
    // instance forking in a loop) must not make an empty uid look unsure, or every clean-up would
    // run to its bound and quarantine its uid, draining the pool.
    quiet = pass > 0 && counts.alive === before ? quiet + 1 : 0;
    if (quiet >= QUIET_LISTINGS) return counts;
  }
  return { ...counts, alive: counts.alive + 1 }; // the uid kept forking: not sure, again
}

/** Listings per scan before it counts as unsure (processes of the uid kept appearing). */
const CHASE_PASSES = 50;
/** Listings in a row with no new process of the uid that end a scan (scanRound). */
const QUIET_LISTINGS = 2;

function check(
  pid: number,
  uid: number,
  kill: boolean,
  counts: { alive: number; signalled: number },
): void {
  const state = stateIfOwnedBy(pid, uid);
  if (state === undefined || state === "dead") return;
  counts.alive++;
  // Unreadable: maybe the uid's, maybe anyone's (root's): counted, never signalled.
  if (state === "dying" || state === "unreadable" || !kill) return;
  try {
    process.kill(pid, "SIGKILL");
    counts.signalled++;
  } catch {
    counts.alive--; // gone meanwhile
  }
}

/**
 * One buffer for every status read of the scans. readFileSync cannot size a /proc file (it stats
 * as 0 bytes), so it took a new 64 KiB buffer for each process: a scan of ~90 processes cost
 * ~6-8 ms of CPU and ~6 MB of garbage, against ~2.5 ms read here. Safe to share: each read is
 * synchronous and decoded before the next.
 */
const STATUS_BUFFER = Buffer.allocUnsafe(16_384);

/** A status that could not be read though the process may still be there (EMFILE, ENOMEM). */
const UNREADABLE = Symbol("unreadable");

/** The process is gone (its /proc entry too), or there is no procfs. */
function gone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ESRCH";
}

/**
 * /proc/<pid>/status; undefined once the process is gone; UNREADABLE when reading failed for
 * another reason. Counting that as gone let a clean-up short of descriptors find a uid empty.
 */
function readStatus(pid: number): string | undefined | typeof UNREADABLE {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/status`, "r");
  } catch (err) {
    return gone(err) ? undefined : UNREADABLE;
  }
  try {
    const n = readSync(fd, STATUS_BUFFER, 0, STATUS_BUFFER.length, 0);
    // Longer than the buffer (thousands of supplementary groups): read whole, as before.
    if (n === STATUS_BUFFER.length) return readFileSync(`/proc/${pid}/status`, "latin1");
    return STATUS_BUFFER.toString("latin1", 0, n);
  } catch (err) {
    return gone(err) ? undefined : UNREADABLE;
  } finally {
    closeSync(fd);
  }
}

/** SIGKILL is signal 9: bit 8 of the pending-signal masks in /proc/<pid>/status. */
const SIGKILL_BIT = 1n << 8n;

/**
 * Undefined when /proc/<pid> is not `uid`'s (real, effective or saved uid) or is gone; "dead" for
 * a zombie (a group leader with threads still running shows as Z too, so only with one thread);
 * "dying" when a SIGKILL is pending (it cannot run code of its own again); "unreadable" when its
 * status could not be read (its uid unknown); else "live".
 */
function stateIfOwnedBy(
  pid: number,
  uid: number,
): "live" | "dying" | "dead" | "unreadable" | undefined {
  const status = readStatus(pid);
  if (status === undefined) return undefined; // gone meanwhile
  if (status === UNREADABLE) return "unreadable";
  const ids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
  if (!ids || (Number(ids[1]) !== uid && Number(ids[2]) !== uid && Number(ids[3]) !== uid))
    return undefined;
  if (/^State:\s+[ZX]/m.test(status) && /^Threads:\s+1$/m.test(status)) return "dead";
  for (const mask of status.matchAll(/^(?:ShdPnd|SigPnd):\s+([0-9a-f]+)$/gm))
    if ((BigInt(`0x${mask[1]}`) & SIGKILL_BIT) !== 0n) return "dying";
  return "live";
}

/**
 * The uids from `base` (`count` of them) with live processes, without killing any: for the
 * start-up, when a dead poolkeeper's claims have lapsed and what its instances left running (a
 * daemon that called setsid outlives the parent-death signal) would meet the next instance given
 * that uid. One /proc listing, then the new pids of each further listing until one holds none of
 * the range (as scanRound). Without the SIGKILL that scanRound's argument rests on, a process that
 * forks and exits faster than its pid is checked can pass unseen: checking newest pids first keeps
 * that window to microseconds, and the caller cleans what is found with killUid, which kills as
 * it chases.
 */
export async function uidsWithProcesses(base: number, count: number): Promise<Set<number>> {
  const found = new Set<number>();
  const seen = new Set<number>();
  let inBatch = 0;
  for (let pass = 0; pass < CHASE_PASSES; pass++) {
    let entries: string[];
    try {
      entries = readdirSync("/proc");
    } catch {
      return found; // no procfs: nothing to scan (as killUid)
    }
    const fresh = entries
      .filter((name) => /^[0-9]+$/.test(name) && !seen.has(Number(name)))
      .map(Number)
      .sort((x, y) => y - x);
    let inRange = false;
    for (const pid of fresh) {
      seen.add(pid);
      if (++inBatch > SCAN_BATCH) {
        inBatch = 1;
        await new Promise((r) => setImmediate(r));
      }
      const uid = liveUidInRange(pid, base, count);
      if (uid === undefined) continue;
      found.add(uid);
      inRange = true;
    }
    if (pass > 0 && !inRange) break;
  }
  return found;
}

/** The real, effective or saved uid of live (not zombie) `pid` that falls in the range, if any. */
function liveUidInRange(pid: number, base: number, count: number): number | undefined {
  const status = readStatus(pid);
  // Unreadable: its uid is unknown. Start-up holds only the uids it found; each one handed out is
  // emptied by killUid (which counts an unreadable process as left) after its instance.
  if (status === undefined || status === UNREADABLE) return undefined; // gone meanwhile
  const ids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
  const uid = ids
    ?.slice(1)
    .map(Number)
    .find((id) => id >= base && id < base + count);
  if (uid === undefined) return undefined;
  if (/^State:\s+[ZX]/m.test(status) && /^Threads:\s+1$/m.test(status)) return undefined;
  return uid;
}
