import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { chmod, chown, mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { FizzError } from "@fizz/events";
import { INSTANCE_PATH } from "./instance-launch";
import type { ForkPass, KillBound, ShieldedKill, UidKill } from "./uid-cleanup";

// What the build sandbox and the runtime launch import from here. INSTANCE_PATH lives in
// instance-launch.ts (a leaf) and the kill in uid-cleanup.ts, which imports nothing of this
// module: re-exporting them from here must not close an import cycle (madge --circular).
export { INSTANCE_PATH };
export { killUid, type UidKill } from "./uid-cleanup";

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
  /**
   * How killUid's first pass runs where instances get their own uid: a Python interpreter that
   * signals with the instance's uid as its effective uid only, so nothing of that uid can kill
   * the pass first (uid-cleanup.ts). Undefined: the pass runs as the uid through setpriv.
   */
  shieldedKill?: ShieldedKill;
  /**
   * The spawner's fork of that pass (uid-cleanup.ts ForkPass). Not configuration: the process
   * backend sets it for its instances' clean-ups once it has a spawner.
   */
  forkPass?: ForkPass;
  /** How long killUid may keep killing a uid's processes (default KILL_BOUND; tests shorten it). */
  killBound?: KillBound;
  /**
   * RLIMIT_NPROC of instances with their own uid (a fork bomb gets EAGAIN instead of filling the
   * host's pid space until the clean-up), set by util-linux prlimit before setpriv drops to the
   * uid. Undefined: no limit. `prlimit` undefined: wanted, but prlimit is missing (the backend
   * warns once and starts instances without it).
   */
  nproc?: { limit: number; prlimit: string | undefined };
  /**
   * The same for builds with their own uid (build/sandbox.ts): a build step (an npm install
   * script, setup.py, go build) is user code too, and needs more room than an instance.
   */
  buildNproc?: { limit: number; prlimit: string | undefined };
}

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
  /** What this pool's lock files hold (ownerToken). */
  private readonly token = ownerToken();
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

  /**
   * Claims `uid` for a clean-up before it is ever handed out (processes of it found at start: a
   * dead poolkeeper's leftovers). False when it is in use here or claimed by a live poolkeeper
   * (then those processes are that poolkeeper's instances, not ours to kill). Ends in giveBack.
   */
  hold(uid: number): boolean {
    if (this.used.has(uid) || !this.claim(uid)) return false;
    this.used.add(uid);
    return true;
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
        writeSync(fd, this.token);
        closeSync(fd);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      let owner: string;
      try {
        owner = readFileSync(file, "utf8");
      } catch {
        continue; // released meanwhile: try again
      }
      if (ownerAlive(owner)) return false; // this process's (another pool of it) or a live one's
      try {
        unlinkSync(file); // a dead poolkeeper's claim; its instances died with it
      } catch {
        // another poolkeeper took it first
      }
    }
    return false;
  }
}

/** Whether `pid` is a live process (of any user). */
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
 * What a claim (a uid's lock file, <workDir>/poolkeeper.pid) says of its owner: this process's
 * pid and start time. A pid alone does not tell a dead owner from a new process that got its pid:
 * a restarted container's poolkeeper is usually pid 1 again, the very pid its predecessor wrote,
 * and took every claim of that predecessor for its own (uids never handed out again, stale
 * directories never removed).
 */
export function ownerToken(): string {
  const start = startTime(process.pid);
  return start === undefined ? String(process.pid) : `${process.pid} ${start}`;
}

/**
 * Whether the owner a claim names (ownerToken) is a live process: this one or another. When a
 * live pid's start time cannot be read (no procfs), it is taken for the owner.
 */
export function ownerAlive(token: string): boolean {
  const [pidText, start] = token.trim().split(/\s+/);
  const pid = Number(pidText);
  if (!pidAlive(pid)) return false;
  // Without a start time: an older run's claim, unless there is no procfs (then every claim is
  // written so, and this pid's is this process's, as before).
  if (start === undefined) return pid !== process.pid || startTime(pid) === undefined;
  const now = startTime(pid);
  return now === undefined || now === start;
}

/** Field 22 of /proc/<pid>/stat: when the process started, in clock ticks after boot. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    // The name (field 2) is in parentheses and may hold spaces: count from its closing one.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
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

/**
 * The command line that starts `cmd` as `uid` (or as is), dying with the poolkeeper, with at most
 * `nproc.limit` processes and threads of its uid when given (an instance's `nproc`, a build's
 * `buildNproc`).
 */
export function wrapCommand(
  cmd: string[],
  uid: number | undefined,
  setpriv: string | undefined,
  nproc?: IsolationOptions["nproc"],
): string[] {
  if (!setpriv) return cmd;
  const drop =
    uid === undefined
      ? []
      : [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--inh-caps=-all"];
  // --pdeathsig: the kernel kills the instance when the poolkeeper dies, even by SIGKILL.
  const run = [setpriv, ...drop, "--no-new-privs", "--pdeathsig=SIGKILL", "--", ...cmd];
  // setpriv sets no rlimit, so prlimit (still root) sets it on itself and execs setpriv: the
  // limit survives the exec and the uid change, and soft = hard, so the function cannot raise it.
  const limit = instanceNprocLimit(uid, nproc);
  if (limit === undefined || !nproc?.prlimit) return run;
  return [nproc.prlimit, `--nproc=${limit}:${limit}`, "--", ...run];
}

/**
 * The RLIMIT_NPROC an instance (or a build step) of `uid` starts with (prlimit or the spawner),
 * or none. Only with its own uid: RLIMIT_NPROC counts every process of the real uid, which for the
 * poolkeeper's own user includes everything else that user runs. Never above the poolkeeper's own
 * hard limit: raising it needs CAP_SYS_RESOURCE, which root in a container often lacks (not in
 * Docker's default set), and every start would fail; the instance inherits that lower limit anyway.
 */
export function instanceNprocLimit(
  uid: number | undefined,
  nproc: IsolationOptions["nproc"],
): number | undefined {
  if (uid === undefined || !nproc || nproc.limit <= 0) return undefined;
  return Math.min(nproc.limit, ownNprocHard() ?? Infinity);
}

let nprocHard: number | null | undefined;

/** This process's hard RLIMIT_NPROC, read once; undefined when unlimited or unknown. */
function ownNprocHard(): number | undefined {
  if (nprocHard === undefined) {
    try {
      const m = /^Max processes\s+\S+\s+(\d+)\s/m.exec(readFileSync("/proc/self/limits", "utf8"));
      nprocHard = m ? Number(m[1]) : null; // "unlimited": no digits
    } catch {
      nprocHard = null;
    }
  }
  return nprocHard ?? undefined;
}
