import { spawn, spawnSync } from "node:child_process";

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

export async function wrk(
  url: string,
  opts: { connections: number; seconds: number; threads?: number },
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
