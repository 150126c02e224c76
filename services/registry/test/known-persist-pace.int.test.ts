import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { expect } from "chai";
import { Redis } from "ioredis";
import { silentLogger } from "@fizz/kit";
import { startRedis, waitFor } from "@fizz/testkit";
import { KnownPersist } from "../src/known-persist";

/**
 * A kind's snapshot is rewritten whole (JSON of every pair, then its HMAC) on the event loop: at
 * 10,000 objects ~20 ms, at 100,000 ~200 ms. Under a steady create load (each create learnt again
 * after its write) it would be rewritten every flush period; the next write waits in proportion to
 * what the last one cost, so a large kind's rewrites stay a small share of a CPU.
 */
describe("registry: persisted known texts' snapshot writes are paced by their cost", () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let client: Redis;

  before(async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
  });
  after(async () => {
    client?.disconnect();
    await redis?.cleanup();
  });

  it("waits after a costly write before rewriting the snapshot, however soon more is learnt", async () => {
    const memory = new Map<string, string>();
    for (let i = 0; i < 60_000; i++)
      memory.set(`pace:obj:functions:default:function-${i}`, randomBytes(32).toString("base64"));
    const persist = new KnownPersist({
      client,
      prefix: "pace:",
      fingerprint: "fp",
      key: randomBytes(32),
      logger: silentLogger(),
      memory: () => memory,
      flushMs: 10,
    });
    persist.learnt("functions");
    await waitFor(() => persist.written === 1, { what: "first snapshot written" });
    // Learning goes on (a create load): one write per 10 ms period would follow without pacing.
    for (let i = 0; i < 6; i++) {
      persist.learnt("functions");
      await sleep(100);
    }
    expect(persist.written).to.equal(1);
    // What is marked is still written: on close (flush), or once the pause is over.
    await persist.close();
    expect(persist.written).to.equal(2);
  });
});
