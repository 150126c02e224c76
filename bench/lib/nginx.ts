import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, portOpen, waitFor } from "@fizz/testkit";

/**
 * nginx as the proxying baseline: Debian's nginx with one worker, `proxy_pass` to an upstream
 * with keepalive connections (HTTP/1.1, Connection cleared), no access log, in the foreground as
 * a child of the bench, with its own prefix, config and temp directories and a random loopback
 * port. Installed from Debian's package when missing (as root), as wrk is (load.ts).
 */
export interface NginxProxy {
  url: string;
  /** The worker's pid (the process doing the proxying), for CPU accounting. */
  workerPid: number;
  stop(): void;
}

const CANDIDATES = ["nginx", "/usr/sbin/nginx"];

function findNginx(): string | undefined {
  for (const c of CANDIDATES) {
    const r = spawnSync(c, ["-v"], { encoding: "utf8" });
    if (r.status === 0) return c;
  }
  return undefined;
}

export function ensureNginx(): string {
  const found = findNginx();
  if (found) return found;
  if (process.getuid?.() === 0) {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    let r = spawnSync("apt-get", ["install", "-y", "-q", "nginx-light"], { stdio: "inherit", env });
    if (r.status !== 0) {
      // A fresh image has no package lists yet.
      spawnSync("apt-get", ["update", "-q"], { stdio: "inherit", env });
      r = spawnSync("apt-get", ["install", "-y", "-q", "nginx-light"], { stdio: "inherit", env });
    }
    const again = findNginx();
    if (again) return again;
  }
  throw new Error("the benchmark needs nginx (Debian/Ubuntu: apt-get install nginx-light)");
}

/** The config: one worker, upstream keepalive, nothing written per request. */
export function nginxConfig(prefix: string, port: number, upstream: string): string {
  return `worker_processes 1;
daemon off;
master_process on;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  keepalive_requests 1000000;
  upstream instance {
    server ${upstream};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://instance;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

/** Starts nginx in front of `target` (http://127.0.0.1:port); stop() kills it and its files. */
export async function startNginx(target: string): Promise<NginxProxy> {
  const bin = ensureNginx();
  const u = new URL(target);
  if (!/^127\.\d+\.\d+\.\d+$/.test(u.hostname) && u.hostname !== "localhost")
    throw new Error(`refusing to proxy to ${u.hostname}: loopback only`);
  const prefix = mkdtempSync(path.join(tmpdir(), "fizz-bench-nginx-"));
  mkdirSync(path.join(prefix, "logs"));
  const port = await freePort();
  const conf = path.join(prefix, "nginx.conf");
  writeFileSync(conf, nginxConfig(prefix, port, u.host));
  const child: ChildProcess = spawn(bin, ["-p", prefix, "-c", conf, "-e", `${prefix}/error.log`], {
    stdio: "ignore",
  });
  const stop = () => {
    // SIGTERM to the master: it stops its worker (fast shutdown).
    child.kill("SIGTERM");
    rmSync(prefix, { recursive: true, force: true });
  };
  try {
    await waitFor(() => portOpen(port), { timeoutMs: 10_000, what: "nginx listening" });
    const workerPid = await waitFor(() => workerOf(child.pid ?? 0), {
      timeoutMs: 5000,
      what: "nginx worker",
    });
    return { url: `http://127.0.0.1:${port}`, workerPid, stop };
  } catch (err) {
    stop();
    throw err;
  }
}

/** The master's one child process (the worker), or undefined while it has none. */
function workerOf(masterPid: number): number | undefined {
  const r = spawnSync("pgrep", ["-P", String(masterPid)], { encoding: "utf8" });
  const pid = Number(r.stdout.trim().split("\n")[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}
