import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, portOpen, waitFor } from "./ports";

/**
 * Real servers for tests: nats-server with JetStream and redis-server, each on a random port with
 * its own temporary directory, never the machine's servers on the standard ports.
 */
export interface TestServer {
  url: string;
  port: number;
  dir: string;
  /** Stops the process (the data directory stays until `cleanup`). */
  stop(): Promise<void>;
  /** Starts it again on the same port and directory (restart tests). */
  restart(): Promise<void>;
  cleanup(): Promise<void>;
}

export const NATS_SERVER_BIN =
  ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].find((p) =>
    existsSync(p),
  ) ?? "nats-server";
export const REDIS_SERVER_BIN =
  ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].find((p) => existsSync(p)) ??
  "redis-server";

async function managed(
  name: string,
  port: number,
  dir: string,
  launch: () => ChildProcess,
): Promise<TestServer> {
  let child: ChildProcess | undefined;
  let stderr = "";
  const start = async () => {
    stderr = "";
    child = launch();
    child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const exited = new Promise<never>((_, reject) =>
      child!.once("exit", (code) => reject(new Error(`${name} exited with ${code}: ${stderr}`))),
    );
    exited.catch(() => undefined);
    await Promise.race([
      waitFor(() => portOpen(port), { timeoutMs: 15_000, what: `${name} on ${port}` }),
      exited,
    ]);
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once("exit", () => resolve());
      c.kill("SIGTERM");
      setTimeout(() => c.kill("SIGKILL"), 5000).unref();
    });
  };
  await start();
  return {
    url: "",
    port,
    dir,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
    cleanup: async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** `port` lets a test start the server late on a port a service is already waiting for. */
export async function startNats(opts: { port?: number } = {}): Promise<TestServer> {
  const port = opts.port ?? (await freePort());
  const dir = await mkdtemp(path.join(tmpdir(), "fizz-nats-"));
  const srv = await managed("nats-server", port, dir, () =>
    spawn(NATS_SERVER_BIN, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], {
      stdio: ["ignore", "ignore", "pipe"],
    }),
  );
  return { ...srv, url: `nats://127.0.0.1:${port}` };
}

export async function startRedis(opts: { port?: number } = {}): Promise<TestServer> {
  const port = opts.port ?? (await freePort());
  const dir = await mkdtemp(path.join(tmpdir(), "fizz-redis-"));
  const srv = await managed("redis-server", port, dir, () =>
    spawn(
      REDIS_SERVER_BIN,
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "yes",
        "--daemonize",
        "no",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    ),
  );
  return { ...srv, url: `redis://127.0.0.1:${port}` };
}
