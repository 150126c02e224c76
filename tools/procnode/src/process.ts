import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readSync, fstatSync } from "node:fs";
import { constants } from "node:os";

export interface Exit {
  exitCode: number;
  signal: string | undefined;
  /** Set when the program could not be started at all (e.g. not found). */
  startError: string | undefined;
}

export interface Proc {
  child: ChildProcess;
  exited: Promise<Exit>;
}

/**
 * Starts a container process: its own process group (so a whole tree can be signalled), stdout and
 * stderr appended to `logFile`, and stdin a pipe that stays open while procnode lives — a Fizz
 * process started with FIZZ_PARENT_STDIN=1 exits when procnode dies, even by SIGKILL.
 */
export function startProcess(
  argv: string[],
  opts: { cwd: string; env: Record<string, string>; logFile: string },
): Proc {
  const fd = openSync(opts.logFile, "a");
  const [cmd = "", ...args] = argv;
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ["pipe", fd, fd],
      detached: true,
    });
  } finally {
    closeSync(fd);
  }
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
  return { child, exited };
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

/** The last `maxBytes` of a log file, for FallbackToLogsOnError termination messages. */
export function tail(file: string, maxBytes = 2048): string {
  try {
    const fd = openSync(file, "r");
    try {
      const size = fstatSync(fd).size;
      const len = Math.min(size, maxBytes);
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, size - len);
      return buf.toString("utf8");
    } finally {
      closeSync(fd);
    }
  } catch {
    return "";
  }
}
