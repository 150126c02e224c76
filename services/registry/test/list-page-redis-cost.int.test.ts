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

  // Texts of ~5 KB (an environment with many labels): a page of the largest limit is ~5 MB.
  before(async () => {
    const p = f.client.pipeline();
    for (let i = 0; i < COUNT; i++) {
      const o = f.env(i);
      for (let j = 0; j < 70; j++) o.metadata.labels[`k${j}`] = "x".repeat(60);
      p.set(f.key(i), JSON.stringify(o));
    }
    await p.exec();
  });

  const luaBytes = async () =>
    Number(/used_memory_lua:(\d+)/.exec(await f.client.info("memory"))![1]);

  // First: the heap of a Redis that only ever ran pages (the Lua heap grows to its high-water
  // mark and stays there, so it is read before any other page of this file ran).
  it("leaves no copy of the page's texts in Redis's Lua heap, which maxmemory does not count", async () => {
    for (let i = 0; i < 3; i++) expect((await f.page(new KnownJson())).items).to.have.length(COUNT);
    // A Redis that ran no script holds ~30 KB there; the page is ~5 MB.
    expect(await luaBytes()).to.be.below(1024 * 1024);
  });

  // What a page may run on Redis's one thread, checked by command rather than timed (timings
  // belong in the bench): reading texts with MGET, never a script. The script version cost 4–7×
  // an MGET of the same texts in Redis CPU (alternated A/B, docs/architecture.md).
  it("reads a page's texts with MGET, running no script on Redis's one thread", async () => {
    const scripts = async () => {
      const stats = await f.client.info("commandstats");
      let calls = 0;
      for (const m of stats.matchAll(
        /^cmdstat_(eval|evalsha|eval_ro|evalsha_ro|fcall|fcall_ro):calls=(\d+)/gm,
      ))
        calls += Number(m[2]);
      return calls;
    };
    const mgets = async () =>
      Number(/^cmdstat_mget:calls=(\d+)/m.exec(await f.client.info("commandstats"))?.[1] ?? 0);
    const [s0, m0] = [await scripts(), await mgets()];
    expect((await f.page(new KnownJson())).items).to.have.length(COUNT);
    expect(await scripts(), "scripts run for a page").to.equal(s0);
    expect(await mgets(), "MGETs for a page").to.be.above(m0);
  });
});
