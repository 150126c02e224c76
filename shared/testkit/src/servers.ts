import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
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

export interface NatsTestUser {
  user: string;
  password: string;
  /** nats-server permissions; none means everything. */
  permissions?: {
    publish?: { allow?: string[]; deny?: string[] };
    subscribe?: { allow?: string[]; deny?: string[] };
    allowResponses?: boolean;
  };
}

/**
 * `port` lets a test start the server late on a port a service is already waiting for. `users`
 * locks it (integration tests that attack the locks); without, it stays open as before.
 */
export async function startNats(
  opts: { port?: number; users?: NatsTestUser[] } = {},
): Promise<TestServer> {
  const port = opts.port ?? (await freePort());
  const dir = await mkdtemp(path.join(tmpdir(), "fizz-nats-"));
  let args = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir];
  if (opts.users) {
    const conf = path.join(dir, "nats-server.conf");
    await writeFile(conf, natsConfig(port, dir, opts.users), { mode: 0o600 });
    args = ["-c", conf];
  }
  const srv = await managed("nats-server", port, dir, () =>
    spawn(NATS_SERVER_BIN, args, { stdio: ["ignore", "ignore", "pipe"] }),
  );
  return { ...srv, url: `nats://127.0.0.1:${port}` };
}

function natsConfig(port: number, dir: string, users: NatsTestUser[]): string {
  const q = (v: unknown) => JSON.stringify(v);
  const rule = (r?: { allow?: string[]; deny?: string[] }) =>
    r ? `{ allow: ${q(r.allow ?? [])}, deny: ${q(r.deny ?? [])} }` : `{ allow: [">"] }`;
  const lines = users.map((u) => {
    const p = u.permissions;
    const perms = p
      ? `, permissions: { publish: ${rule(p.publish)}, subscribe: ${rule(p.subscribe)}, ` +
        `allow_responses: ${p.allowResponses ?? false} }`
      : "";
    return `    { user: ${q(u.user)}, password: ${q(u.password)}${perms} }`;
  });
  return `listen: "127.0.0.1:${port}"\njetstream { store_dir: ${q(dir)} }\nauthorization {\n  users: [\n${lines.join("\n")}\n  ]\n}\n`;
}

export interface RedisTestUser {
  user: string;
  password: string;
  /** ACL rules after `on >password`, e.g. `~fizz:v1:* +@read`; default everything. */
  rules?: string;
}

/** `users` locks it with an ACL file (`default` off); without, it stays open as before. */
export async function startRedis(
  opts: { port?: number; users?: RedisTestUser[] } = {},
): Promise<TestServer> {
  const port = opts.port ?? (await freePort());
  const dir = await mkdtemp(path.join(tmpdir(), "fizz-redis-"));
  const acl: string[] = [];
  if (opts.users) {
    const file = path.join(dir, "users.acl");
    const lines = ["user default off resetkeys -@all"].concat(
      opts.users.map((u) => `user ${u.user} on >${u.password} ${u.rules ?? "~* &* +@all"}`),
    );
    await writeFile(file, lines.join("\n") + "\n", { mode: 0o600 });
    acl.push("--aclfile", file);
  }
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
        ...acl,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    ),
  );
  return { ...srv, url: `redis://127.0.0.1:${port}` };
}
