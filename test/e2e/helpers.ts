import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, startNats, startRedis, type TestServer } from "@fizz/testkit";
// The same launcher `npm start` uses, so these tests run what a user runs.
import { launchPlatform } from "../../scripts/lib/platform.mjs";

export const ROOT = path.resolve(import.meta.dirname, "../..");

export interface Platform {
  gatewayUrl: string;
  registryUrl: string;
  natsUrl: string;
  redisUrl: string;
  workDir: string;
  logs: string[];
  /** Runs `fizz ...` as a user would (`npx fizz`), in the work directory. */
  fizz(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  file(name: string, content: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startPlatform(env: Record<string, string> = {}): Promise<Platform> {
  const [nats, redis]: [TestServer, TestServer] = await Promise.all([startNats(), startRedis()]);
  const workDir = await mkdtemp(path.join(tmpdir(), "fizz-e2e-"));
  const logs: string[] = [];
  let launched: Awaited<ReturnType<typeof launchPlatform>>;
  try {
    launched = await launchPlatform({
      dataDir: path.join(workDir, ".fizz"),
      natsUrl: nats.url,
      redisUrl: redis.url,
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
    await Promise.all([nats.cleanup(), redis.cleanup()]);
    throw err;
  }
  const cliEnv = {
    ...process.env,
    FIZZ_REGISTRY_URL: launched.registryUrl,
    FIZZ_GATEWAY_URL: launched.gatewayUrl,
  };
  return {
    gatewayUrl: launched.gatewayUrl,
    registryUrl: launched.registryUrl,
    natsUrl: nats.url,
    redisUrl: redis.url,
    workDir,
    logs,
    fizz: (...args) => run(path.join(ROOT, "node_modules", ".bin", "fizz"), args, workDir, cliEnv),
    file: async (name, content) => {
      const p = path.join(workDir, name);
      await writeFile(p, content);
      return p;
    },
    stop: async () => {
      await launched.stop();
      await Promise.all([nats.cleanup(), redis.cleanup()]);
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
