// Launches the platform as local processes: the embedded NATS and Redis (unless URLs are given)
// and the five services. Used by `npm start` and by the end-to-end tests, so the tests exercise
// exactly what a user runs. Plain JavaScript: it runs before anything is compiled or installed.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { findBinary, ROOT } from "./prereqs.mjs";

export const SERVICES = ["registry", "scheduler", "poolkeeper", "gateway", "kubewatcher"];

export function freePort(host = "127.0.0.1") {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function portOpen(port, host = "127.0.0.1") {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

async function waitUntil(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function ready(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
  await res.arrayBuffer();
  return res.ok;
}

/**
 * @param {object} opts
 * @param {string} opts.dataDir   where embedded servers keep data and instances their work dirs
 * @param {string=} opts.natsUrl  use this NATS instead of starting one
 * @param {string=} opts.redisUrl use this Redis instead of starting one
 * @param {number=} opts.gatewayPort  default 8080
 * @param {number=} opts.registryPort default 8081
 * @param {Record<string,string>=} opts.env extra environment for every service
 * @param {(name: string, line: string) => void=} opts.onLog  service output (default: inherit)
 */
export async function launchPlatform(opts) {
  const children = [];
  const spawnChild = (name, cmd, args, env, { exitWithStdin = false } = {}) => {
    const child = spawn(cmd, args, {
      cwd: ROOT,
      env,
      // stdin is a pipe the child watches: if this launcher dies, even by SIGKILL, it closes and
      // the services stop, so nothing is left orphaned.
      stdio: [
        exitWithStdin ? "pipe" : "ignore",
        opts.onLog ? "pipe" : "inherit",
        opts.onLog ? "pipe" : "inherit",
      ],
    });
    if (opts.onLog) {
      for (const stream of [child.stdout, child.stderr]) {
        let buf = "";
        stream.on("data", (d) => {
          buf += d.toString();
          let i;
          while ((i = buf.indexOf("\n")) >= 0) {
            opts.onLog(name, buf.slice(0, i));
            buf = buf.slice(i + 1);
          }
        });
      }
    }
    children.push({ name, child });
    return child;
  };

  const stop = async () => {
    // Services first (they drain), then the servers they talk to.
    const order = [...children].reverse();
    const services = order.filter((c) => SERVICES.includes(c.name));
    const servers = order.filter((c) => !SERVICES.includes(c.name));
    for (const group of [services, servers]) {
      await Promise.all(
        group.map(
          ({ child }) =>
            new Promise((resolve) => {
              if (child.exitCode !== null || child.signalCode !== null) return resolve();
              child.once("exit", resolve);
              child.kill("SIGTERM");
              setTimeout(() => child.kill("SIGKILL"), 10_000).unref();
            }),
        ),
      );
    }
  };

  try {
    mkdirSync(opts.dataDir, { recursive: true });
    let natsUrl = opts.natsUrl;
    let redisUrl = opts.redisUrl;
    if (!natsUrl) {
      const port = await freePort();
      const dir = path.join(opts.dataDir, "nats");
      mkdirSync(dir, { recursive: true });
      const bin = findBinary("nats-server", ["/usr/sbin/nats-server", "/usr/bin/nats-server"]);
      spawnChild(
        "nats",
        bin,
        ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir],
        process.env,
      );
      natsUrl = `nats://127.0.0.1:${port}`;
      await waitUntil(() => portOpen(port), 15_000, "nats-server");
    }
    if (!redisUrl) {
      const port = await freePort();
      const dir = path.join(opts.dataDir, "redis");
      mkdirSync(dir, { recursive: true });
      const bin = findBinary("redis-server", ["/usr/bin/redis-server"]);
      // appendonly: what was registered survives a restart of `npm start`.
      const args = [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--appendonly",
        "yes",
        "--save",
        "",
        "--loglevel",
        "warning",
      ];
      spawnChild("redis", bin, args, process.env);
      redisUrl = `redis://127.0.0.1:${port}`;
      await waitUntil(() => portOpen(port), 15_000, "redis-server");
    }

    const ports = {
      gateway: opts.gatewayPort ?? 8080,
      registry: opts.registryPort ?? 8081,
      gatewayOps: await freePort(),
      scheduler: await freePort(),
      poolkeeper: await freePort(),
      kubewatcher: await freePort(),
    };
    const env = {
      ...process.env,
      FIZZ_NATS_URL: natsUrl,
      FIZZ_REDIS_URL: redisUrl,
      FIZZ_GATEWAY_PORT: String(ports.gateway),
      FIZZ_GATEWAY_OPS_PORT: String(ports.gatewayOps),
      FIZZ_REGISTRY_PORT: String(ports.registry),
      FIZZ_SCHEDULER_PORT: String(ports.scheduler),
      FIZZ_POOLKEEPER_PORT: String(ports.poolkeeper),
      FIZZ_KUBEWATCHER_PORT: String(ports.kubewatcher),
      FIZZ_WORKDIR: path.join(opts.dataDir, "work"),
      FIZZ_PARENT_STDIN: "1",
      ...opts.env,
    };
    for (const svc of SERVICES) {
      spawnChild(
        svc,
        process.execPath,
        ["--import", "tsx", path.join("services", svc, "src", "main.ts")],
        env,
        {
          exitWithStdin: true,
        },
      );
    }
    const readyz = {
      registry: `http://127.0.0.1:${ports.registry}/readyz`,
      gateway: `http://127.0.0.1:${ports.gatewayOps}/readyz`,
      scheduler: `http://127.0.0.1:${ports.scheduler}/readyz`,
      poolkeeper: `http://127.0.0.1:${ports.poolkeeper}/readyz`,
      kubewatcher: `http://127.0.0.1:${ports.kubewatcher}/readyz`,
    };
    const exited = new Promise((_, reject) => {
      for (const { name, child } of children) {
        child.once("exit", (code, sig) =>
          reject(new Error(`${name} exited (${code ?? sig}) while starting`)),
        );
      }
    });
    exited.catch(() => undefined);
    await Promise.race([
      Promise.all(
        Object.entries(readyz).map(([n, u]) => waitUntil(() => ready(u), 60_000, `${n} at ${u}`)),
      ),
      exited,
    ]);
    return {
      natsUrl,
      redisUrl,
      ports,
      gatewayUrl: `http://127.0.0.1:${ports.gateway}`,
      registryUrl: `http://127.0.0.1:${ports.registry}`,
      children,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
