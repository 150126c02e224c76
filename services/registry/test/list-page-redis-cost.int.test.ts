import { readFileSync } from "node:fs";
import { expect } from "chai";
import { LIST_MAX_LIMIT } from "@fizz/events";
import { KnownJson } from "../src/store-parse";
import { learnFixture } from "./learn-fixture";

/**
 * A page's cost to Redis. Redis runs every command of every service on one thread (the
 * scheduler's specialization claims included), so what a page costs there is paid by every
 * client, and any holder of the read token can ask for pages of LIST_MAX_LIMIT objects in a loop.
 * The registry scales out, Redis does not: a page must cost Redis about what reading its texts
 * does (an MGET), not a multiple of it. Reading the texts inside a Lua script and concatenating
 * them there cost Redis 4–7× an MGET of the same keys (each text copied into the Lua heap, then
 * concatenated, then copied into the reply) and left ~3× the page's bytes in the Lua heap, which
 * Redis does not count against maxmemory (the k8s Redis has a 512 MiB limit).
 */
describe("registry store: what a page costs Redis", () => {
  const PREFIX = "page-cost-test:";
  const COUNT = LIST_MAX_LIMIT;
  const f = learnFixture({ prefix: PREFIX, count: COUNT, store: "page-cost-test" });
  let redisPid: number;

  // Texts of ~5 KB (an environment with many labels): a page of the largest limit is ~5 MB.
  before(async () => {
    const p = f.client.pipeline();
    for (let i = 0; i < COUNT; i++) {
      const o = f.env(i);
      for (let j = 0; j < 70; j++) o.metadata.labels[`k${j}`] = "x".repeat(60);
      p.set(f.key(i), JSON.stringify(o));
    }
    await p.exec();
    redisPid = Number(/process_id:(\d+)/.exec(await f.client.info("server"))![1]);
  });

  /** CPU time (ms) Redis's main thread has run so far (Linux schedstat). */
  const redisRunMs = () =>
    Number(readFileSync(`/proc/${redisPid}/task/${redisPid}/schedstat`, "utf8").split(" ")[0]) /
    1e6;
  const luaBytes = async () =>
    Number(/used_memory_lua:(\d+)/.exec(await f.client.info("memory"))![1]);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

  // First: the heap of a Redis that only ever ran pages (the Lua heap grows to its high-water
  // mark and stays there, so it is read before any other page of this file ran).
  it("leaves no copy of the page's texts in Redis's Lua heap, which maxmemory does not count", async () => {
    for (let i = 0; i < 3; i++) expect((await f.page(new KnownJson())).items).to.have.length(COUNT);
    // A Redis that ran no script holds ~30 KB there; the page is ~5 MB.
    expect(await luaBytes()).to.be.below(1024 * 1024);
  });

  it("costs Redis's thread about what an MGET of the page's texts costs, not a multiple", async () => {
    const keys = Array.from({ length: COUNT }, (_, i) => f.key(i));
    const page: number[] = [];
    const mget: number[] = [];
    const known = new KnownJson();
    // Warm both (and learn the texts, so the page's own CPU here is small).
    expect((await f.page(known)).items).to.have.length(COUNT);
    await f.client.mgetBuffer(...keys);
    // Alternated, CPU of Redis's main thread (not wall time: the machine is shared).
    for (let i = 0; i < 9; i++) {
      let t0 = redisRunMs();
      await f.page(known);
      await f.client.ping();
      page.push(redisRunMs() - t0);
      t0 = redisRunMs();
      await f.client.mgetBuffer(...keys);
      await f.client.ping();
      mget.push(redisRunMs() - t0);
    }
    expect(median(page), `page ${median(page)} ms, MGET ${median(mget)} ms`).to.be.below(
      2 * median(mget) + 1,
    );
  });
});
