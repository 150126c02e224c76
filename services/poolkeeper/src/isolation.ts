import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { spawn } from "node:child_process";
import { chmod, chown, mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { FizzError } from "@fizz/events";

/**
 * How the process backend keeps instances apart from the platform and from each other
 * (docs/runtime-contract.md, docs/security.md).
 */
export interface IsolationOptions {
  /**
   * Run each instance as its own uid/gid, from `uidBase` up (`uidCount` of them). Only possible
   * when the poolkeeper runs as root; undefined: instances run as the poolkeeper's user.
   */
  uids: { base: number; count: number; lockDir: string } | undefined;
  /**
   * util-linux setpriv: drops to the instance's uid, clears supplementary groups, sets
   * no_new_privs and a parent-death signal. Undefined: not available, instances start directly.
   */
  setpriv: string | undefined;
  /** How long killUid may keep killing a uid's processes (default KILL_BOUND; tests shorten it). */
  killBound?: KillBound;
}

/** The variables every instance gets besides its own: nothing of the poolkeeper's environment. */
export const INSTANCE_PATH = "/usr/local/bin:/usr/bin:/bin";

export function instanceBaseEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = { PATH: INSTANCE_PATH, LANG: "C.UTF-8" };
  // The host's time zone is not a secret, and functions printing local times expect it.
  if (env.TZ) out.TZ = env.TZ;
  return out;
}

/**
 * One uid per live instance, the lowest free one first, given back when the instance is gone.
 * A uid is never shared by two live instances, so one cannot signal, trace or read the other, even
 * across poolkeepers on the same host (several platforms, tests): each uid taken is claimed by a
 * lock file holding the poolkeeper's pid, in a root-only directory; a dead pid's claim is void.
 */
export class UidPool {
  private readonly used = new Set<number>();
  /** Quarantined: stay in `used` and keep their lock file (other pools on the host skip them). */
  private readonly held = new Set<number>();
  private cursor = 0;
  constructor(
    private readonly base: number,
    private readonly count: number,
    private readonly lockDir: string,
  ) {
    mkdirSync(lockDir, { recursive: true, mode: 0o700 });
  }

  /**
   * Round robin, not lowest-free-first: a uid given back is the last to be handed out again, so
   * anything that outlived its instance despite killUid meets no new victim for a long while.
   */
  take(): number {
    for (let i = 0; i < this.count; i++) {
      const uid = this.base + ((this.cursor + i) % this.count);
      if (!this.used.has(uid) && this.claim(uid)) {
        this.used.add(uid);
        this.cursor = (uid - this.base + 1) % this.count;
        return uid;
      }
    }
    throw new FizzError(
      "NO_CAPACITY",
      `all ${this.count} instance uids from ${this.base} are in use (FIZZ_INSTANCE_UID_COUNT)`,
      { retryable: true },
    );
  }

  /**
   * After killUid: a uid with nothing left goes back to the pool; one with processes still alive
   * is quarantined instead (they could tamper with the next instance given it, maybe another
   * tenant's), kept claimed for this pool's life. True when given back.
   */
  giveBack(uid: number, kill: UidKill): boolean {
    if (kill.left === 0) {
      this.release(uid);
      return true;
    }
    this.held.add(uid);
    return false;
  }

  /** Uids never to be handed out again: processes of theirs outlived every kill. */
  get quarantined(): number[] {
    return [...this.held];
  }

  release(uid: number): void {
    if (this.held.has(uid) || !this.used.delete(uid)) return;
    try {
      unlinkSync(this.lockFile(uid));
    } catch {
      // already gone
    }
  }

  private lockFile(uid: number): string {
    return path.join(this.lockDir, String(uid));
  }

  private claim(uid: number): boolean {
    const file = this.lockFile(uid);
    // Two tries, no back-off: the second follows clearing a dead owner's claim (or a release).
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(file, "wx", 0o600);
        writeSync(fd, String(process.pid));
        closeSync(fd);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      let owner = NaN;
      try {
        owner = Number(readFileSync(file, "utf8"));
      } catch {
        continue; // released meanwhile: try again
      }
      if (owner === process.pid || pidAlive(owner)) return false;
      try {
        unlinkSync(file); // a dead poolkeeper's claim; its instances died with it
      } catch {
        // another poolkeeper took it first
      }
    }
    return false;
  }
}

function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Makes `<workDir>/instances` reachable for instance uids without letting them list it: the
 * directories get 0711 (traverse, not read), and any ancestor that other users cannot traverse
 * (a mkdtemp test directory is 0700) gets the traverse bit only. Returns the ancestors it changed,
 * for the log.
 */
export async function prepareInstancesDir(workDir: string): Promise<string[]> {
  const instances = path.join(workDir, "instances");
  await mkdir(instances, { recursive: true, mode: 0o711 });
  await chmod(workDir, 0o711);
  await chmod(instances, 0o711);
  return traversable(path.dirname(workDir));
}

/**
 * Gives other users the traverse bit (never read) on `dir` and its ancestors where they lack it,
 * so instance uids can reach what they must run (a checkout or interpreter under a 0700 home).
 * Returns the directories changed.
 */
export async function traversable(dir: string): Promise<string[]> {
  const changed: string[] = [];
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const st = await stat(d);
    if ((st.mode & 0o001) === 0) {
      await chmod(d, (st.mode & 0o7777) | 0o001);
      changed.push(d);
    }
    if (d === path.dirname(d)) break;
  }
  return changed;
}

/** The instance's own directory: 0700 and owned by its uid, so no other instance can read it. */
export async function makeInstanceDir(dir: string, uid: number | undefined): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  if (uid !== undefined) await chown(dir, uid, uid);
}

/** The command line that starts `cmd` as `uid` (or as is), dying with the poolkeeper. */
export function wrapCommand(
  cmd: string[],
  uid: number | undefined,
  setpriv: string | undefined,
): string[] {
  if (!setpriv) return cmd;
  const drop =
    uid === undefined
      ? []
      : [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--inh-caps=-all"];
  // --pdeathsig: the kernel kills the instance when the poolkeeper dies, even by SIGKILL.
  return [setpriv, ...drop, "--no-new-privs", "--pdeathsig=SIGKILL", "--", ...cmd];
}

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
 * SIGKILLs every process running as `uid`: what an instance left behind outside its process group
 * (a daemon that called setsid) must not live on to read the next instance given that uid.
 *
 * The first pass runs `kill -KILL -1` AS that uid (through setpriv), twice, from one shell: the
 * kernel signals every process the uid may signal in one pass under the task-list lock, so neither
 * a fork loop nor a process that hid its /proc entry (prctl PR_SET_DUMPABLE 0 makes /proc/<pid>
 * root-owned) escapes. One process for both passes, not one each: every spawn forks the
 * poolkeeper (~9 ms of CPU at its size). The shell's text is fixed; nothing of the instance is in
 * it. But the uid may signal that shell too: a leftover looping `kill -KILL -1` can kill it first.
 *
 * So root then scans /proc, matching the real, effective and saved uids in /proc/<pid>/status (not
 * the directory's owner, which a non-dumpable process changes), and SIGKILLs what it finds, which
 * nothing of the uid can block or answer. A process forked after the listing escapes a listing,
 * so each scan chases the new pids (scanRound) and the scans repeat until one finds nothing alive.
 * Nothing left is the common case and costs one scan and one more readdir. At the bound, `left` counts what is still alive: the caller
 * must not hand the uid out again (UidPool.giveBack).
 */
export async function killUid(
  uid: number,
  setpriv?: string,
  bound: KillBound = KILL_BOUND,
): Promise<UidKill> {
  if (setpriv) {
    await new Promise<void>((resolve) => {
      const k = spawn(
        setpriv,
        [
          `--reuid=${uid}`,
          `--regid=${uid}`,
          "--clear-groups",
          "--",
          "sh",
          "-c",
          "kill -KILL -1; kill -KILL -1",
        ],
        // Not the poolkeeper's environment (its NATS and Redis credentials): `kill` runs as the
        // uid, and what the uid left behind could read /proc/<pid>/environ before the signal.
        { stdio: "ignore", env: { PATH: INSTANCE_PATH } },
      );
      // Its exit status says nothing useful (kill answers 1 even after signalling).
      k.once("exit", () => resolve());
      k.once("error", () => resolve());
    });
  }
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
 * Then nothing of the uid is left: a process created after that listing needs a parent of the
 * uid alive then, but each was SIGKILLed when checked, and a fork by a process with SIGKILL
 * pending fails (also one in flight while listing: it fails, or the child is in the next list).
 * So the chase ends at the first listing whose new pids hold none of the uid's; new pids of other
 * uids do not matter. Costs one more readdir (~0.1 ms) when nothing was left.
 */
async function scanRound(
  uid: number,
  kill: boolean,
): Promise<{ alive: number; signalled: number } | undefined> {
  const counts = { alive: 0, signalled: 0 };
  const seen = new Set<number>();
  let inBatch = 0;
  for (let pass = 0; pass < CHASE_PASSES; pass++) {
    let entries: string[];
    try {
      entries = readdirSync("/proc");
    } catch {
      return pass === 0 ? undefined : { ...counts, alive: counts.alive + 1 };
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
    if (pass > 0 && counts.alive === before) return counts;
  }
  return { ...counts, alive: counts.alive + 1 }; // the uid kept forking: not sure, again
}

/** Listings per scan before it counts as unsure (processes of the uid kept appearing). */
const CHASE_PASSES = 50;

function check(
  pid: number,
  uid: number,
  kill: boolean,
  counts: { alive: number; signalled: number },
): void {
  const state = stateIfOwnedBy(pid, uid);
  if (state === undefined || state === "dead") return;
  counts.alive++;
  if (state === "dying" || !kill) return;
  try {
    process.kill(pid, "SIGKILL");
    counts.signalled++;
  } catch {
    counts.alive--; // gone meanwhile
  }
}

/** SIGKILL is signal 9: bit 8 of the pending-signal masks in /proc/<pid>/status. */
const SIGKILL_BIT = 1n << 8n;

/**
 * Undefined when /proc/<pid> is not `uid`'s (real, effective or saved uid) or is gone; "dead" for
 * a zombie (a group leader with threads still running shows as Z too, so only with one thread);
 * "dying" when a SIGKILL is pending (it cannot run code of its own again); else "live".
 */
function stateIfOwnedBy(pid: number, uid: number): "live" | "dying" | "dead" | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "latin1");
  } catch {
    return undefined; // gone meanwhile
  }
  const ids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
  if (!ids || (Number(ids[1]) !== uid && Number(ids[2]) !== uid && Number(ids[3]) !== uid))
    return undefined;
  if (/^State:\s+[ZX]/m.test(status) && /^Threads:\s+1$/m.test(status)) return "dead";
  for (const mask of status.matchAll(/^(?:ShdPnd|SigPnd):\s+([0-9a-f]+)$/gm))
    if ((BigInt(`0x${mask[1]}`) & SIGKILL_BIT) !== 0n) return "dying";
  return "live";
}
