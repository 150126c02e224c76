import { spawn, spawnSync } from "node:child_process";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * The load generator for every warm comparison: wrk (C, epoll), so the generator's own CPU cost is
 * small and the same for the gateway, the direct path and the Go baseline. Installed from Debian's
 * package when missing (as root); only 127.0.0.1 targets are accepted.
 */
export interface LoadResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  requests: number;
}

export function ensureWrk(): string {
  const which = spawnSync("sh", ["-c", "command -v wrk"], { encoding: "utf8" });
  if (which.status === 0) return which.stdout.trim();
  if (process.getuid?.() === 0) {
    spawnSync("apt-get", ["install", "-y", "-q", "wrk"], {
      stdio: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    const again = spawnSync("sh", ["-c", "command -v wrk"], { encoding: "utf8" });
    if (again.status === 0) return again.stdout.trim();
  }
  throw new Error("the benchmark needs wrk (Debian/Ubuntu: apt-get install wrk)");
}

/** What wrk sends instead of a GET: a POST of `bytes` bytes (a Lua script, written once). */
export interface WrkPost {
  post: number;
}

function postScript(bytes: number): string {
  const file = path.join(tmpdir(), `fizz-wrk-post-${bytes}.lua`);
  writeFileSync(
    file,
    `wrk.method = "POST"\nwrk.body = string.rep("x", ${bytes})\n` +
      `wrk.headers["Content-Type"] = "application/octet-stream"\n`,
  );
  return file;
}

export async function wrk(
  url: string,
  opts: { connections: number; seconds: number; threads?: number } & Partial<WrkPost>,
): Promise<LoadResult> {
  const host = new URL(url).hostname;
  if (!/^127\.\d+\.\d+\.\d+$/.test(host) && host !== "localhost")
    throw new Error(`refusing to load ${host}: loopback only`);
  const args = [
    "-t",
    String(opts.threads ?? 1),
    "-c",
    String(opts.connections),
    "-d",
    `${opts.seconds}s`,
    "--latency",
    ...(opts.post !== undefined ? ["-s", postScript(opts.post)] : []),
    url,
  ];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(ensureWrk(), args, { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout.on("data", (d: Buffer) => (text += d.toString()));
    child.stderr.on("data", (d: Buffer) => (text += d.toString()));
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}: ${text}`)),
    );
  });
  return parseWrk(out);
}

function toMs(value: string, unit: string): number {
  const v = Number(value);
  return unit === "us" ? v / 1000 : unit === "s" ? v * 1000 : unit === "m" ? v * 60_000 : v;
}

export function parseWrk(out: string): LoadResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const pct = (p: string) => {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s|m)`).exec(out);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const sockErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return { rps, p50Ms: pct("50"), p99Ms: pct("99"), errors: non2xx + sockErrors, requests };
}

/**
 * CPU time (user + system, in clock ticks of 1/100 s on Linux) a process and all its descendants
 * have used so far, from /proc/<pid>/stat; 0 for a process that is gone. Read before and after a
 * run, the difference over the requests served is the process's CPU per request.
 */
export function cpuTicks(pid: number): number {
  let total = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15.
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      total += Number(rest[11]) + Number(rest[12]);
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

function descendants(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    let children = "";
    try {
      children = readFileSync(`/proc/${pid}/task/${t}/children`, "utf8");
    } catch {
      continue;
    }
    for (const c of children.split(" ")) {
      const n = Number(c);
      if (c !== "" && Number.isInteger(n)) out.push(n, ...descendants(n));
    }
  }
  return out;
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on Linux). */
export const CLOCK_TICKS_PER_S = 100;

/**
 * wrk against `url` while the CPU of the given processes is metered: each process's CPU time over
 * the run in microseconds per request served (`cpuUsPerReq`, same order as `pids`).
 */
export async function wrkMetered(
  url: string,
  opts: { connections: number; seconds: number; threads?: number } & Partial<WrkPost>,
  pids: readonly number[],
): Promise<LoadResult & { cpuUsPerReq: number[] }> {
  const before = pids.map(cpuTicks);
  const r = await wrk(url, opts);
  const after = pids.map(cpuTicks);
  const perReq = (i: number) =>
    r.requests > 0 ? ((after[i]! - before[i]!) / CLOCK_TICKS_PER_S / r.requests) * 1e6 : Number.NaN;
  return { ...r, cpuUsPerReq: pids.map((_, i) => perReq(i)) };
}
