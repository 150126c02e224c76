import { expect } from "chai";
import { Redis } from "ioredis";
import { startRedis, type TestServer } from "@fizz/testkit";
import { readBatch } from "../src/redis-batch";

/**
 * A transaction's reads go out with their WATCH as one pipeline (one socket write). What the
 * store's writers rely on: the reads' replies in order, a failed read failing the batch, and the
 * WATCH in force, so a change by another client after the read aborts the transaction's EXEC.
 */
describe("readBatch (real Redis)", function () {
  this.timeout(30_000);
  let redis: TestServer;
  let a: Redis;
  let b: Redis;
  before(async () => {
    redis = await startRedis();
    a = new Redis(redis.url);
    b = new Redis(redis.url);
  });
  after(async () => {
    a?.disconnect();
    b?.disconnect();
    await redis?.cleanup();
  });

  it("answers the reads' replies in order, without the WATCH's", async () => {
    await b.set("rb:x", "1");
    await b.sadd("rb:s", "m1", "m2");
    const out = await readBatch(a, ["rb:x", "rb:s"], (p) => p.get("rb:x").smembers("rb:s"));
    expect(out[0]).to.equal("1");
    expect((out[1] as string[]).sort()).to.deep.equal(["m1", "m2"]);
    await a.unwatch();
    expect(await readBatch(a, undefined, (p) => p.get("rb:missing"))).to.deep.equal([null]);
  });

  it("rejects when a read fails, naming Redis's error", async () => {
    await b.sadd("rb:set", "m");
    try {
      await readBatch(a, ["rb:set"], (p) => p.get("rb:set"));
      expect.fail("a GET of a set answered");
    } catch (err) {
      expect(String(err)).to.match(/WRONGTYPE/);
    }
    await a.unwatch();
  });

  it("keeps the WATCH in force: a change after the read aborts the EXEC, none lets it commit", async () => {
    await b.set("rb:w", "before");
    await readBatch(a, ["rb:w"], (p) => p.get("rb:w"));
    await b.set("rb:w", "changed");
    expect(await a.multi().set("rb:w", "mine").exec()).to.equal(null);
    expect(await b.get("rb:w")).to.equal("changed");

    await readBatch(a, ["rb:w"], (p) => p.get("rb:w"));
    expect(await a.multi().set("rb:w", "mine").exec()).to.deep.equal([[null, "OK"]]);
    expect(await b.get("rb:w")).to.equal("mine");
  });
});
