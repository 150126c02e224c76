import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readSync, fstatSync } from "node:fs";
import { constants } from "node:os";
import { parseCriEntry } from "./cri-log";
import { ContainerLogWriter, type LogLimits } from "./log-writer";

export interface Exit {
  exitCode: number;
  signal: string | undefined;
  /** Set when the program could not be started at all (e.g. not found). */
  startError: string | undefined;
}

export interface Proc {
  child: ChildProcess;
  exited: Promise<Exit>;
  /** Its stdout and stderr, written to the log file as CRI entries. */
  logs: ContainerLogWriter;
}

/**
 * Starts a container process: its own process group (so a whole tree can be signalled), stdout and
 * stderr read from pipes into `logFile` as CRI entries (log-writer.ts), and stdin a pipe that stays
 * open while procnode lives — a Fizz process started with FIZZ_PARENT_STDIN=1 exits when procnode
 * dies, even by SIGKILL.
 */
export function startProcess(
  argv: string[],
  opts: { cwd: string; env: Record<string, string>; logFile: string; limits?: LogLimits },
): Proc {
  const logs = new ContainerLogWriter(opts.logFile, opts.limits);
  const [cmd = "", ...args] = argv;
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env,
    stdio: ["pipe", "pipe", "pipe"],
    detached: true,
  });
  logs.attach("stdout", child.stdout);
  logs.attach("stderr", child.stderr);
  child.stdin?.on("error", () => undefined);
  const exited = new Promise<Exit>((resolve) => {
    let done = false;
    child.once("error", (err) => {
      // 'error' without a pid: the program never ran. With a pid it is a signalling error; 'exit' follows.
      if (done || child.pid !== undefined) return;
      done = true;
      resolve({ exitCode: 128, signal: undefined, startError: err.message });
    });
    child.once("exit", (code, signal) => {
      if (done) return;
      done = true;
      const signum = signal ? ((constants.signals as Record<string, number>)[signal] ?? 0) : 0;
      resolve({
        exitCode: code ?? 128 + signum,
        signal: signal ?? undefined,
        startError: undefined,
      });
    });
  });
  return { child, exited, logs };
}

/**
 * After the main process exited: waits (up to `ms`) until its pipes are drained into the log, so a
 * reader following the log sees the last lines before the container shows as terminated. A
 * descendant still holding a pipe has been killed with the group; the wait is only a bound.
 */
export async function drainLogs(proc: Proc, ms = 2000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([proc.logs.done, new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
  proc.logs.close();
}

/** Signals the process group (the container's whole tree); falls back to the process alone. */
export function signal(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    if (child.pid !== undefined) process.kill(-child.pid, sig);
  } catch {
    try {
      child.kill(sig);
    } catch {
      // already gone
    }
  }
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the process has exited. */
export async function terminate(proc: Proc, graceMs: number): Promise<Exit> {
  signal(proc.child, "SIGTERM");
  const timer = setTimeout(() => signal(proc.child, "SIGKILL"), graceMs);
  try {
    return await proc.exited;
  } finally {
    clearTimeout(timer);
    killGroup(proc.child);
  }
}

/** After the main process exits, nothing it started may outlive the container. */
export function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // group already empty
  }
}

/** The last `maxBytes` of a container's output (the content of its CRI log), for FallbackToLogsOnError. */
export function tail(file: string, maxBytes = 2048): string {
  try {
    const fd = openSync(file, "r");
    try {
      const size = fstatSync(fd).size;
      // Entries carry ~40 bytes of prefix each; read enough of the file to fill maxBytes of text.
      const len = Math.min(size, maxBytes * 4);
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, size - len);
      const text = buf
        .toString("utf8")
        .split("\n")
        .map((l) => parseCriEntry(l))
        .map((e) => (e ? e.content + (e.partial ? "" : "\n") : ""))
        .join("");
      return text.slice(-maxBytes);
    } finally {
      closeSync(fd);
    }
  } catch {
    return "";
  }
}
