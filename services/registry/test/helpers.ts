import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import type { Metadata, WireError } from "@fizz/events";
import { connectNats, silentLogger, type Logger } from "@fizz/kit";
import { openArchiveStore, type ArchiveStore } from "@fizz/kit/archive-store";
import { startNats, startRedis, waitFor, type TestServer } from "@fizz/testkit";
import { loadConfig, start, type RegistryService } from "../src/index";

/** Real nats-server and redis-server for one test file. */
export interface Stack {
  nats: TestServer;
  redis: TestServer;
  /** A plain client for reading Redis behind the registry's back. */
  client: Redis;
  cleanup(): Promise<void>;
}

export async function startStack(): Promise<Stack> {
  const [nats, redis] = await Promise.all([startNats(), startRedis()]);
  const client = new Redis(redis.url, { maxRetriesPerRequest: 1, lazyConnect: true });
  await client.connect();
  return {
    nats,
    redis,
    client,
    async cleanup() {
      client.disconnect();
      await Promise.all([nats.cleanup(), redis.cleanup()]);
    },
  };
}

/** The Object Store the registry keeps code and archives in, read behind its back. */
export async function openBlobs(
  stack: Pick<Stack, "nats">,
): Promise<{ store: ArchiveStore; close(): Promise<void> }> {
  const nc = await connectNats({ url: stack.nats.url, name: "test-blobs", logger: silentLogger() });
  const store = await openArchiveStore(nc);
  return { store, close: () => nc.close() };
}

export const CODE_MAX_BYTES = 1024;
/** Real tokens, so every integration test goes through authentication as production does. */
export const ADMIN_TOKEN = "test-admin-token-0123456789abcdef";
export const READ_TOKEN = "test-read-token-0123456789abcdef";

export function registryEnv(
  stack: Pick<Stack, "nats" | "redis">,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    FIZZ_NATS_URL: stack.nats.url,
    FIZZ_REDIS_URL: stack.redis.url,
    FIZZ_REGISTRY_PORT: "0",
    FIZZ_CODE_MAX_BYTES: String(CODE_MAX_BYTES),
    FIZZ_LOG_LEVEL: "silent",
    FIZZ_ADMIN_TOKEN: ADMIN_TOKEN,
    FIZZ_READ_TOKEN: READ_TOKEN,
    ...extra,
  };
}

export interface Running {
  svc: RegistryService;
  api: Api;
}

/**
 * Starts a registry and, unless `ready: false`, waits for /readyz: start() returns once NATS is
 * connected, while the store's Redis connections may still be coming up (writes answer 503
 * until then), which made the first write of a busy test run flaky.
 */
export async function startRegistry(
  env: Record<string, string>,
  opts: { ready?: boolean; logger?: Logger } = {},
): Promise<Running> {
  const svc = await start(loadConfig(env), { logger: opts.logger ?? silentLogger() });
  const api = new Api(`http://127.0.0.1:${svc.port}`);
  if (opts.ready !== false) {
    await waitFor(async () => (await api.call("GET", "/readyz")).status === 200, {
      what: "registry ready",
    });
  }
  return { svc, api };
}

/**
 * A registry answer as the tests read it: an object (`apiVersion` … `spec`), a list (`items`), an
 * error (`error`) or a probe (`checks`). An answer has only some of these fields; reading one it
 * lacks gives undefined at run time, which the assertion on it then reports. Specs stay loosely
 * typed (each kind has its own), and the tests compare them whole.
 */
export interface ReplyBody {
  apiVersion: string;
  kind: string;
  metadata: Metadata;
  spec: Record<string, unknown>;
  items: ReplyBody[];
  error: WireError;
  checks: Record<string, boolean>;
}

export interface Reply {
  status: number;
  headers: Headers;
  bytes: Buffer;
  /** Undefined at run time when the answer is not JSON. */
  body: ReplyBody;
}

export interface CallOptions {
  /** A body sent as given (broken JSON, odd content types). */
  raw?: string | Buffer;
  contentType?: string;
  /** The bearer token; null sends no Authorization header. Defaults to the client's token. */
  token?: string | null;
  headers?: Record<string, string>;
}

/** A thin fetch client that authenticates with the admin token unless told otherwise. */
export class Api {
  constructor(
    readonly base: string,
    readonly token: string | null = ADMIN_TOKEN,
  ) {}

  /** The same registry as another caller (the read-only token, or nobody). */
  as(token: string | null): Api {
    return new Api(this.base, token);
  }

  async call(method: string, path: string, body?: unknown, opts: CallOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...opts.headers };
    const init: RequestInit = { method, headers };
    if (opts.raw !== undefined) init.body = opts.raw;
    else if (body !== undefined) init.body = JSON.stringify(body);
    if (init.body !== undefined) headers["content-type"] = opts.contentType ?? "application/json";
    const token = opts.token === undefined ? this.token : opts.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${this.base}${path}`, init);
    const bytes = Buffer.from(await res.arrayBuffer());
    let parsed: ReplyBody | undefined;
    try {
      parsed = JSON.parse(bytes.toString("utf8")) as ReplyBody;
    } catch {
      parsed = undefined;
    }
    // The registry answers JSON except where a test sends something broken on purpose.
    return { status: res.status, headers: res.headers, bytes, body: parsed as ReplyBody };
  }

  ns(ns = "default") {
    const base = `/v1/namespaces/${ns}`;
    return {
      list: (kind: string) => this.call("GET", `${base}/${kind}`),
      get: (kind: string, name: string) => this.call("GET", `${base}/${kind}/${name}`),
      create: (kind: string, body: unknown) => this.call("POST", `${base}/${kind}`, body),
      patch: (kind: string, name: string, body: unknown) =>
        this.call("PATCH", `${base}/${kind}/${name}`, body),
      delete: (kind: string, name: string) => this.call("DELETE", `${base}/${kind}/${name}`),
      code: (name: string) => this.call("GET", `${base}/functions/${name}/code`),
    };
  }
}

export function b64(text: string | Buffer): string {
  return Buffer.from(text).toString("base64");
}

export const envBody = (name: string, spec: Record<string, unknown> = {}) => ({
  name,
  spec: { image: "fizz/env-python", ...spec },
});
export const fnBody = (name: string, env: string, spec: Record<string, unknown> = {}) => ({
  name,
  spec: {
    environment: env,
    code: { filename: "hello.py", content: b64(`def main():\n    return "${name}"\n`) },
    ...spec,
  },
});
export const triggerBody = (name: string, fn: string, spec: Record<string, unknown> = {}) => ({
  name,
  spec: { function: fn, path: `/${name}`, ...spec },
});

/** Every key under the prefix with its value: equal snapshots mean nothing was written. */
export async function snapshot(
  client: Redis,
  prefix = "fizz:v1:",
): Promise<Record<string, string>> {
  const keys = (await client.keys(`${prefix}*`)).sort();
  const out: Record<string, string> = {};
  for (const key of keys) {
    const type = await client.type(key);
    out[key] =
      type === "set"
        ? JSON.stringify((await client.smembers(key)).sort())
        : type === "zset" // the list index (store-list.ts), in its own order
          ? JSON.stringify(await client.zrange(key, 0, -1))
          : ((await client.get(key)) ?? "");
  }
  return out;
}
export const mqtBody = (name: string, fn: string, spec: Record<string, unknown> = {}) => ({
  name,
  spec: { function: fn, subject: `orders.${name}`, ...spec },
});
export const timerBody = (name: string, fn: string, spec: Record<string, unknown> = {}) => ({
  name,
  spec: { function: fn, cron: "*/5 * * * *", ...spec },
});
export const watchBody = (
  name: string,
  fn: string,
  spec: Record<string, unknown> = {},
  ns = "default",
) => ({
  name,
  spec: { function: fn, namespace: ns, resource: "pods", ...spec },
});

/** A fresh secrets key file (32 random bytes, base64, 0600) for FIZZ_SECRETS_KEY_FILE. */
export async function secretsKeyFile(): Promise<{ path: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "fizz-key-"));
  const path = join(dir, "secrets.key");
  await writeFile(path, randomBytes(32).toString("base64") + "\n", { mode: 0o600 });
  return { path, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** POST .../archives with a raw body. */
export function uploadArchive(
  api: Api,
  body: Buffer,
  opts: { ns?: string; use?: string; contentType?: string } = {},
): Promise<Reply> {
  const query = opts.use === undefined ? "" : `?use=${opts.use}`;
  return api.call("POST", `/v1/namespaces/${opts.ns ?? "default"}/archives${query}`, undefined, {
    raw: body,
    contentType: opts.contentType ?? "application/gzip",
  });
}
