import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, portOpen, waitFor } from "./ports";

/**
 * Debian's nginx as the load balancer production puts in front of a service: one worker, an
 * upstream pool whose connections are kept (`keepalive`, HTTP/1.1, Connection cleared) and shared
 * by every client, in the foreground as a child of the test with its own prefix and a loopback
 * port per `location` variant. .ci/run installs nginx; a machine without it fails the test with
 * the command that installs it.
 */
export interface NginxLbOptions {
  /** `127.0.0.1:port` of the service behind it. */
  upstream: string;
  /** Idle upstream connections kept per worker (`keepalive N`). */
  keepalive: number;
  /** One listening port per entry: extra directives of its `location /` (e.g. buffering off). */
  variants: Record<string, string>;
}

export interface NginxLb {
  /** Per variant name: its port. */
  ports: Record<string, number>;
  /** nginx's error log so far (upstream errors a test may want to show). */
  errorLog(): string;
  stop(): Promise<void>;
}

function nginxBinary(): string {
  for (const c of ["nginx", "/usr/sbin/nginx"])
    if (spawnSync(c, ["-v"], { encoding: "utf8" }).status === 0) return c;
  throw new Error("this test needs nginx (Debian/Ubuntu: apt-get install nginx-light)");
}

export async function startNginxLb(opts: NginxLbOptions): Promise<NginxLb> {
  const bin = nginxBinary();
  const prefix = mkdtempSync(path.join(tmpdir(), "fizz-test-nginx-"));
  mkdirSync(path.join(prefix, "logs"));
  const ports: Record<string, number> = {};
  let servers = "";
  for (const [name, extra] of Object.entries(opts.variants)) {
    const port = await freePort();
    ports[name] = port;
    servers += `
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://service;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      ${extra}
    }
  }`;
  }
  const log = path.join(prefix, "error.log");
  // As root, nginx's worker would run as nobody, who cannot write the temp directories here.
  const user = process.getuid?.() === 0 ? "user root;" : "";
  const conf = `${user}
worker_processes 1;
daemon off;
master_process on;
pid ${prefix}/nginx.pid;
error_log ${log} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  client_max_body_size 64m;
  keepalive_requests 1000000;
  upstream service {
    server ${opts.upstream};
    keepalive ${opts.keepalive};
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }${servers}
}
`;
  const file = path.join(prefix, "nginx.conf");
  writeFileSync(file, conf);
  const child = spawn(bin, ["-p", prefix, "-c", file, "-e", log], { stdio: "ignore" });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async (): Promise<void> => {
    child.kill("SIGTERM");
    await exited;
    rmSync(prefix, { recursive: true, force: true });
  };
  const errorLog = (): string => {
    try {
      return readFileSync(log, "utf8");
    } catch {
      return "";
    }
  };
  try {
    for (const port of Object.values(ports))
      await waitFor(() => portOpen(port), { timeoutMs: 10_000, what: "nginx listening" });
  } catch (err) {
    const text = errorLog();
    await stop();
    throw new Error(`${(err as Error).message}: ${text}`);
  }
  return { ports, errorLog, stop };
}
