import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

// What the tests that start, watch and kill real processes share (node-build-parent-death,
// uid-cleanup, the nproc tests through fork-bomb.ts; spawner-robust has the same helpers): the
// tools, a temporary directory, and readings of /proc.

export const SETPRIV = "/usr/bin/setpriv";
export const PYTHON = "/usr/bin/python3";
export const isRoot = process.getuid?.() === 0;

/** A new directory under the system's temporary one; removeDir when done. */
export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** setpriv's arguments to run `argv` as `uid` (its gid the same, no supplementary groups). */
export function asUid(uid: number, argv: string[]): string[] {
  return [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--", ...argv];
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Calls `look` until it gives a truthy value, sleeping `everyMs` between calls, `tries` times at
 * most: that value, or the last one. For a test that asserts on the outcome itself (testkit's
 * waitFor throws its own error instead), and that must not look twice: a scan can miss a process
 * it saw a moment ago.
 */
export async function until<T>(look: () => T, tries: number, everyMs: number): Promise<T> {
  for (let i = 0; ; i++) {
    const value = look();
    if (value || i >= tries) return value;
    await sleep(everyMs);
  }
}

/** The pids in /proc now. */
export function pids(): number[] {
  return readdirSync("/proc")
    .filter((name) => /^[0-9]+$/.test(name))
    .map(Number);
}

/** The fields of /proc/<pid>/stat after the command (state first), or undefined once gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** Alive: listed in /proc and neither a zombie (not waited for yet) nor dead. */
export function alive(pid: number): boolean {
  const state = statFields(pid)?.[0];
  return state !== undefined && state !== "Z" && state !== "X";
}

/** The pids whose parent is `ppid` (field 4 of /proc/<pid>/stat). */
export function childrenOf(ppid: number): number[] {
  return pids().filter((pid) => Number(statFields(pid)?.[1]) === ppid);
}

/** Processes whose real, effective or saved uid is `uid`, not counting zombies. */
export function pidsOfUid(uid: number): number[] {
  const found: number[] = [];
  for (const pid of pids()) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, "latin1");
      const ids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
      if (!ids || !ids.slice(1).some((id) => Number(id) === uid)) continue;
      if (/^State:\s+[ZX]/m.test(status) && /^Threads:\s+1$/m.test(status)) continue;
      found.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

const NS_LAST_PID = "/proc/sys/kernel/ns_last_pid";

/** Whether a pid can be handed out on purpose here: root with CAP_SYS_ADMIN over the pid namespace. */
export function canForcePids(): boolean {
  try {
    writeFileSync(NS_LAST_PID, readFileSync(NS_LAST_PID, "utf8"));
    return true;
  } catch {
    return false;
  }
}

/** Until /proc has no entry for `pid` (its parent reaped it): a busy wait, so no I/O is read meanwhile. */
export function untilReaped(pid: number): void {
  while (existsSync(`/proc/${pid}`));
}

/**
 * A detached `sleep 300` (its own session and group, as an instance has) at the number of a
 * process just reaped: `reaped` starts, kills and reaps one and returns its pid. Another process
 * may take the number first: tried 5 times; undefined if it always was. The caller acts on the
 * reaped one right after the await: only microtasks run in between, so an exit report not read
 * yet (a spawner's line) is still unread.
 */
export async function impostorAtReapedPid(
  reaped: () => Promise<number>,
): Promise<ChildProcess | undefined> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const pid = await reaped();
    writeFileSync(NS_LAST_PID, String(pid - 1));
    const p = spawn("sleep", ["300"], { detached: true, stdio: "ignore" });
    if (p.pid === pid) return p;
    p.kill("SIGKILL");
  }
  return undefined;
}
