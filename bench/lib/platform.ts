import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  Codecs,
  subjects,
  type ArchiveRef,
  type ArchiveUploadReply,
  type Instance,
} from "@fizz/events";
import { request } from "@fizz/kit";
import { freePort, startNats, startRedis } from "@fizz/testkit";
import { request as undiciRequest } from "undici";
import { launchPlatform } from "../../scripts/lib/platform.mjs";

/** The whole platform as `npm start` runs it, on random ports, with its own NATS and Redis. */
export async function startBenchPlatform(logFile: string) {
  const [nats, redis] = await Promise.all([startNats(), startRedis()]);
  const dataDir = await mkdtemp(path.join(tmpdir(), "fizz-bench-"));
  const log = createWriteStream(logFile);
  const launched = await launchPlatform({
    dataDir,
    natsUrl: nats.url,
    redisUrl: redis.url,
    gatewayPort: await freePort(),
    registryPort: await freePort(),
    env: { FIZZ_LOG_LEVEL: "warn" },
    onLog: (name: string, line: string) => log.write(`[${name}] ${line}\n`),
  });
  // launchPlatform writes the registry's admin token here (owner-only), as `npm start` does.
  const adminToken = (await readFile(path.join(dataDir, "admin-token"), "utf8")).trim();
  const nc: NatsConnection = await connect({ servers: nats.url });
  const subs = subjects();
  const pids = Object.fromEntries(
    launched.children.map(({ name, child }) => [name, child.pid!]),
  ) as Record<string, number>;
  return {
    ...launched,
    pids,
    async instances(): Promise<Instance[]> {
      const r = await request(
        nc,
        subs.poolkeeperList,
        Codecs.poolkeeperList,
        {},
        { sender: "bench", timeoutMs: 5000 },
      );
      return r.instances;
    },
    async api(method: string, p: string, body?: unknown) {
      const res = await fetch(`${launched.registryUrl}${p}`, {
        method,
        headers: { "content-type": "application/json", authorization: `Bearer ${adminToken}` },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
      return JSON.parse(text) as unknown;
    },
    /** POST a raw archive file to /v1/namespaces/{ns}/archives (streamed from disk). */
    async upload(ns: string, use: "source" | "deployment", file: string): Promise<ArchiveRef> {
      const res = await undiciRequest(
        `${launched.registryUrl}/v1/namespaces/${ns}/archives?use=${use}`,
        {
          method: "POST",
          headers: {
            "content-type": "application/gzip",
            "content-length": String((await stat(file)).size),
            authorization: `Bearer ${adminToken}`,
          },
          body: createReadStream(file),
        },
      );
      const text = await res.body.text();
      if (res.statusCode !== 201) throw new Error(`upload ${file}: ${res.statusCode} ${text}`);
      return (JSON.parse(text) as ArchiveUploadReply).archive;
    },
    async stop() {
      await nc.close();
      await launched.stop();
      await Promise.all([nats.cleanup(), redis.cleanup()]);
      await rm(dataDir, { recursive: true, force: true });
      log.end();
    },
  };
}
export type BenchPlatform = Awaited<ReturnType<typeof startBenchPlatform>>;

export async function rssMb(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    return Math.round((kb / 1024) * 10) / 10;
  } catch {
    return NaN;
  }
}

/** The pid of the process started for an instance (found by its FIZZ_INSTANCE_ID). */
export async function pidOfInstance(id: string): Promise<number | undefined> {
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = await readFile(`/proc/${entry}/environ`, "utf8");
      if (env.split("\0").includes(`FIZZ_INSTANCE_ID=${id}`)) return Number(entry);
    } catch {
      // processes come and go while we scan
    }
  }
  return undefined;
}

export function code(filename: string, text: string) {
  return { filename, content: Buffer.from(text).toString("base64") };
}
