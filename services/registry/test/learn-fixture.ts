import { Redis } from "ioredis";
import { API_VERSION, redisKeys, type Environment } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { startRedis, waitFor } from "@fizz/testkit";
import { RedisStore } from "../src/store";
import { listPage } from "../src/store-page";
import type { KnownJson } from "../src/store-parse";
import type { PageOf } from "../src/store-types";

/**
 * The stored objects the learning tests (list-learn, store-relearn) read: `count` environments
 * written through a RedisStore on a real Redis, and a page read as a listing reads it. Registers
 * its own mocha before/after hooks; the Redis handles are set once `before` ran.
 */
export interface LearnFixture {
  redis: Awaited<ReturnType<typeof startRedis>>;
  client: Redis;
  store: RedisStore;
  name: (i: number) => string;
  env: (i: number, note?: string) => Environment;
  key: (i: number) => string;
  /** A page of every object, counting the texts `known` had to parse and check for it. */
  page: (known: KnownJson) => Promise<PageOf<Buffer> & { checked: number }>;
}

/** The name of the fixture's `i`th environment (sorted as numbered). */
export function fixtureName(i: number): string {
  return `e-${String(i).padStart(3, "0")}`;
}

/** The fixture's `i`th environment, as stored (fixed times, so its text is the same each run). */
export function fixtureEnv(i: number, note = `n${i}`): Environment {
  return {
    apiVersion: API_VERSION,
    kind: "Environment",
    metadata: {
      namespace: "default",
      name: fixtureName(i),
      uid: `u${i}`,
      revision: 1,
      labels: { note },
      createdAt: "2026-01-01T00:00:00.000Z",
      updatedAt: "2026-01-01T00:00:00.000Z",
    },
    spec: { image: "fizz/env-node", poolSize: 3 },
  };
}

export function learnFixture(opts: { prefix: string; count: number; store: string }): LearnFixture {
  const keys = redisKeys(opts.prefix);
  const f = {
    name: fixtureName,
    env: fixtureEnv,
    key: (i: number) => keys.obj("environments", "default", fixtureName(i)),
    page: async (known: KnownJson) => {
      const before = known.checks;
      const out = await listPage(
        f.client,
        opts.prefix,
        "environments",
        { limit: opts.count + 10, maxBytes: 10_000_000 },
        (kind, objKey, raw) => {
          try {
            return known.jsonBytes(kind, objKey, raw);
          } catch {
            return undefined;
          }
        },
      );
      return { ...out, checked: known.checks - before };
    },
  } as LearnFixture;

  before(async () => {
    f.redis = await startRedis();
    f.client = new Redis(f.redis.url);
    f.store = new RedisStore({
      url: f.redis.url,
      prefix: opts.prefix,
      client: f.client,
      name: opts.store,
      logger: silentLogger(),
    });
    await waitFor(() => f.store.ready(), { what: "store ready" });
    const put = Array.from({ length: opts.count }, (_, i) => f.env(i));
    await f.store.transact(() => Promise.resolve({ writes: { put }, result: undefined }));
  });

  after(async () => {
    await f.store?.close();
    f.client?.disconnect();
    await f.redis?.cleanup();
  });

  return f;
}
