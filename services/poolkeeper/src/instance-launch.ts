import { readFileSync, writeFileSync } from "node:fs";
import { autogroupThroughSpawner, autogroupWritten } from "./spawner-autogroup";

/** The variables every instance gets besides its own: nothing of the poolkeeper's environment. */
export const INSTANCE_PATH = "/usr/local/bin:/usr/bin:/bin";

/** The readiness pipe's descriptor in the child (FIZZ_READY_FD); health.ts reads our end. */
export const READY_FD = 3;
/** Runtimes whose loader writes READY_LINE to FIZZ_READY_FD once ready. */
const ANNOUNCING = new Set<string>(["node", "python", "go"]);

/**
 * The CPU niceness of a pool refill's session while it starts (its autogroup, see
 * startPriority). 10 gives it about a tenth of the CPU share of a normal session under contention:
 * enough to come up on an idle machine at full speed, too little to slow a request down.
 */
export const REFILL_NICE = 10;
/**
 * How long a refill stays at REFILL_NICE at most. Long enough to keep it out of the way of the
 * specialize and first call that follow the take that caused it (tens of ms); short, because on a
 * saturated machine a niced session gets almost nothing: measured at load 24 on 2 cores, a Node
 * refill took 7-15 s to be ready at nice 10 against ~1 s at 0, and a refill may be handed to a
 * waiting empty-pool start by the spawn gate.
 */
export const REFILL_LOW_PRIORITY_MS = 300;

export interface InstanceSpec {
  id: string;
  dir: string;
  port: number;
  specializeToken: string;
  /** Only what the poolkeeper allows (PATH, LANG, TZ): never its own environment. */
  baseEnv: Record<string, string>;
  /** Our own loader (not spec.command): it gets the readiness pipe. */
  announces: boolean;
  /** Started for a specialize already waiting: no warm-up. */
  taken: boolean;
}

/** Runtimes whose warm instance reads the archive form's `archiveFile` (its own copy, no body). */
const READS_ARCHIVE_FILE = new Set<string>(["go"]);

/**
 * Whether a specialize may hand this instance its archive as a file in its directory: our own
 * loader of a runtime that reads one, running as its own uid (not the poolkeeper's, which could
 * change the poolkeeper's cached copy through the link) with its own 0700 directory.
 */
export function readsArchiveFile(
  runtime: string | undefined,
  hostCommand: boolean,
  instance: { uid?: number | undefined; dir?: string | undefined },
): boolean {
  return (
    !hostCommand &&
    READS_ARCHIVE_FILE.has(runtime ?? "") &&
    instance.dir !== undefined &&
    instance.uid !== undefined &&
    instance.uid !== process.getuid?.()
  );
}

/** Whether the environment's loader is ours and announces readiness (FIZZ_READY_FD). */
export function announcesReadiness(runtime: string | undefined, hostCommand: boolean): boolean {
  return !hostCommand && ANNOUNCING.has(runtime ?? "");
}

/** The whole environment of an instance: the documented variables (docs/runtime-contract.md). */
export function instanceEnv(spec: InstanceSpec): Record<string, string> {
  return {
    // A piped Python stdout is block-buffered: the function's prints would reach the logs late.
    PYTHONUNBUFFERED: "1",
    ...spec.baseEnv,
    HOME: spec.dir,
    TMPDIR: spec.dir,
    PORT: String(spec.port),
    HOST: "127.0.0.1",
    FIZZ_INSTANCE_ID: spec.id,
    FIZZ_WORKDIR: spec.dir,
    FIZZ_PARENT_STDIN: "1",
    FIZZ_SPECIALIZE_TOKEN: spec.specializeToken,
    ...(spec.announces ? { FIZZ_READY_FD: String(READY_FD) } : {}),
    // Taken for a specialize already waiting: a warm-up rehearsal would only delay it.
    ...(spec.taken ? { FIZZ_WARM_UP: "0" } : {}),
  };
}

/** stdin (EOF = poolkeeper gone), stdout, stderr, and fd 3 = the readiness pipe when announcing. */
export function instanceStdio(announces: boolean): Array<"pipe"> {
  return announces ? ["pipe", "pipe", "pipe", "pipe"] : ["pipe", "pipe", "pipe"];
}

/** What StartPriority needs of the child: its pid, and whether it has been reaped. */
export interface PrioritizedChild {
  readonly pid?: number | undefined;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
}

/**
 * Start-up priority of pool refills. A refill spawned right after a take spends ~100-200 ms of CPU
 * on Node's bootstrap and its warm-up; on 2 cores that ran next to the specialize and first call
 * of the request that caused it. Every instance leads its own session (detached), and with the
 * kernel's autogroup scheduling each session is one scheduling entity whose share is set by
 * /proc/<pid>/autogroup: nicing it covers all of the runtime's threads, including those created
 * after the write, which per-thread setpriority would miss.
 *
 * Only as root with CAP_SYS_ADMIN: the instance runs as another uid, and without CAP_SYS_ADMIN the
 * kernel allows one autogroup write per 100 ms machine-wide and refuses the others (EAGAIN), so
 * the write that raises a refill back could fail and leave it at a low priority for good (root in
 * a default container has no CAP_SYS_ADMIN). The priority is restored after
 * REFILL_LOW_PRIORITY_MS, or earlier when spawn() returns the instance, so an instance is never
 * handed out, or specialized, at a low priority.
 *
 * A reaped pid may already belong to another session, whose priority is not ours to change. A
 * child_process child's pid is written to only while it is not reaped (Node sets exitCode or
 * signalCode in the same callback that reaps it). A spawner child is reaped by the spawner, and
 * its exit read here later, so its write goes through the spawner, which refuses once it has
 * reaped it (autogroupThroughSpawner). That write is asynchronous: the caller awaits written()
 * after the restore before it hands the instance out. A failure is the spawner's to log, which at
 * worst leaves a refill at normal priority or writes 0 where 0 already is.
 */
export class StartPriority {
  readonly enabled: boolean;
  private readonly write: (pid: number, nice: number) => boolean;

  constructor(
    opts: {
      enabled?: boolean;
      /** Writes /proc/<pid>/autogroup unless set (tests); false when the write failed. */
      write?: (pid: number, nice: number) => boolean;
    } = {},
  ) {
    this.enabled = opts.enabled ?? (process.getuid?.() === 0 && canSetAutogroups());
    this.write = opts.write ?? setAutogroupNice;
  }

  /**
   * Lowers a refill's session right after spawn, for REFILL_LOW_PRIORITY_MS at most. Returns the
   * restore to call once the instance is ready (idempotent; a process already gone is no error).
   */
  lower(child: PrioritizedChild, forMs = REFILL_LOW_PRIORITY_MS): () => void {
    const pid = child.pid;
    const ours = () => child.exitCode === null && child.signalCode === null;
    if (!this.enabled || pid === undefined || !ours()) return noop;
    const viaSpawner = autogroupThroughSpawner(child);
    const write = viaSpawner ?? ((nice: number) => this.write(pid, nice));
    if (!write(REFILL_NICE)) return noop;
    let done = false;
    const restore = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (ours()) write(0);
    };
    const timer = setTimeout(restore, forMs);
    timer.unref();
    return restore;
  }

  /**
   * Resolves once the priority writes made so far for `child` are done: at once when they were
   * made by pid, and when the spawner has answered for one of its children.
   */
  written(child: PrioritizedChild): Promise<void> {
    return autogroupWritten(child);
  }
}

const noop = () => undefined;

/** Autogroups on, and CAP_SYS_ADMIN in our effective set (autogroup writes not rate-limited). */
function canSetAutogroups(): boolean {
  try {
    if (readFileSync("/proc/sys/kernel/sched_autogroup_enabled", "utf8").trim() !== "1")
      return false;
    return hasCapability(readFileSync("/proc/self/status", "utf8"), CAP_SYS_ADMIN);
  } catch {
    return false;
  }
}

const CAP_SYS_ADMIN = 21;

/** Whether /proc/<pid>/status text lists capability `bit` in the effective set (CapEff). */
export function hasCapability(status: string, bit: number): boolean {
  const hex = /^CapEff:\s*([0-9a-f]+)$/im.exec(status)?.[1];
  return hex !== undefined && ((BigInt(`0x${hex}`) >> BigInt(bit)) & 1n) === 1n;
}

/** The niceness /proc/<pid>/autogroup reports ("/autogroup-123 nice 10"), for tests. */
export function autogroupNice(pid: number): number | undefined {
  try {
    const m = / nice (-?\d+)/.exec(readFileSync(`/proc/${pid}/autogroup`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function setAutogroupNice(pid: number, nice: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/autogroup`, String(nice));
    return true;
  } catch {
    return false;
  }
}
