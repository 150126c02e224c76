import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort } from "@fizz/testkit";
// The same launcher `npm start` uses, so these tests run what a user runs.
import { launchPlatform } from "../../scripts/lib/platform.mjs";

export const ROOT = path.resolve(import.meta.dirname, "../..");

export interface Platform {
  gatewayUrl: string;
  /** The gateway's ops port (/healthz, /readyz, /metrics), apart from user traffic. */
  gatewayOpsUrl: string;
  registryUrl: string;
  /** Without credentials: the embedded servers refuse it (what an attacker has). */
  natsUrl: string;
  redisUrl: string;
  /** `nats://app:<password>@host:port`, the documented application user, as `npm start` prints. */
  appNatsUrl: string;
  /** The same, as options for `connect()` from @nats-io (which ignores credentials in URLs). */
  appNats: { servers: string; user: string; pass: string };
  /** The NATS URL with one platform user's credentials (for probes acting as that service). */
  natsUrlAs(user: string): string;
  /** The Redis URL with one service's ACL user (registry, scheduler, poolkeeper). */
  redisUrlAs(user: string): string;
  /** From the generated `.fizz/credentials.json`, as the CLI and the registry see them. */
  adminToken: string;
  readToken: string;
  /** The launcher's data dir (`.fizz/` of workDir): credentials, server data, instance work dirs. */
  dataDir: string;
  workDir: string;
  logs: string[];
  /** Runs `fizz ...` as a user would (`npx fizz`), in the work directory. */
  fizz(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  file(name: string, content: string): Promise<string>;
  /** Pid of each platform process the launcher runs now (nats, redis and the five services). */
  pids(): Record<string, number>;
  /** A REST call to the registry with the admin token; JSON bodies are sent as JSON. */
  api(method: string, urlPath: string, body?: unknown): Promise<ApiReply>;
  stop(): Promise<void>;
}

export interface ApiReply {
  status: number;
  text: string;
  /** The parsed body (undefined when it is not JSON). */
  json: unknown;
}

/**
 * The platform as `npm start` runs it: the launcher starts NATS and Redis itself, locked with
 * credentials it generates in `<workDir>/.fizz/`, on random ports.
 */
export async function startPlatform(env: Record<string, string> = {}): Promise<Platform> {
  const workDir = await mkdtemp(path.join(tmpdir(), "fizz-e2e-"));
  const dataDir = path.join(workDir, ".fizz");
  const logs: string[] = [];
  let launched: Awaited<ReturnType<typeof launchPlatform>>;
  try {
    launched = await launchPlatform({
      dataDir,
      gatewayPort: await freePort(),
      registryPort: await freePort(),
      env: { FIZZ_LOG_LEVEL: "info", ...env },
      onLog: (name: string, line: string) => {
        logs.push(`[${name}] ${line}`);
        if (logs.length > 5000) logs.shift();
      },
    });
  } catch (err) {
    console.error(logs.slice(-100).join("\n"));
    await rm(workDir, { recursive: true, force: true });
    throw err;
  }
  const cliEnv = {
    ...process.env,
    FIZZ_REGISTRY_URL: launched.registryUrl,
    FIZZ_GATEWAY_URL: launched.gatewayUrl,
    FIZZ_TOKEN: launched.adminToken,
  };
  const creds = launched.credentials;
  const appPassword = creds.nats.app;
  const appNatsUrl = launched.appNatsUrl;
  if (!appPassword || !appNatsUrl) throw new Error("the launcher generated no app user");
  const withUser = (raw: string, user: string, password: string | undefined) => {
    if (!password) throw new Error(`no generated credentials for user "${user}"`);
    const u = new URL(raw);
    u.username = user;
    u.password = password;
    return u.toString();
  };
  return {
    gatewayUrl: launched.gatewayUrl,
    gatewayOpsUrl: `http://127.0.0.1:${launched.ports.gatewayOps}`,
    registryUrl: launched.registryUrl,
    natsUrl: launched.natsUrl,
    redisUrl: launched.redisUrl,
    appNatsUrl,
    appNats: { servers: launched.natsUrl, user: "app", pass: appPassword },
    natsUrlAs: (user) => withUser(launched.natsUrl, user, creds.nats[user]),
    redisUrlAs: (user) => withUser(launched.redisUrl, user, creds.redis[user]),
    adminToken: launched.adminToken,
    readToken: launched.readToken,
    dataDir,
    workDir,
    logs,
    fizz: (...args) => run(path.join(ROOT, "node_modules", ".bin", "fizz"), args, workDir, cliEnv),
    file: async (name, content) => {
      const p = path.join(workDir, name);
      await writeFile(p, content);
      return p;
    },
    pids: () => {
      const out: Record<string, number> = {};
      for (const { name, child } of launched.children as { name: string; child: ChildProcess }[])
        if (child.pid !== undefined) out[name] = child.pid;
      return out;
    },
    api: async (method, urlPath, body) => {
      const res = await fetch(`${launched.registryUrl}${urlPath}`, {
        method,
        headers: {
          authorization: `Bearer ${launched.adminToken}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, text, json };
    },
    stop: async () => {
      await launched.stop();
      await rm(workDir, { recursive: true, force: true });
    },
  };
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

export async function get(url: string, init?: RequestInit) {
  const started = performance.now();
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, text, headers: res.headers, ms: performance.now() - started };
}
