import { expect } from "chai";
import { Redis } from "ioredis";
import { redisKeys, type AnyObject } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { startRedis, waitFor, type TestServer } from "@fizz/testkit";
import { TxLanes } from "../src/store-tx";
import type { StoreReader } from "../src/store-types";

/**
 * A read that fails inside a transaction's commit step (the route index's read of a trigger the
 * body did not read: WATCH and GET in one pipeline, the GET answering WRONGTYPE) left its WATCH on
 * the lane's connection. WATCHes only add reasons to abort, so a leftover one never lets a later
 * transaction commit wrongly, but the next transaction on that lane aborted its EXEC once for a key
 * it never read if that key changed meanwhile.
 */
describe("transaction lanes after a failed read in the commit step (real Redis)", function () {
  this.timeout(30_000);
  const keys = redisKeys("t:");
  let redis: TestServer;
  let lanes: TxLanes;
  let other: Redis;
  let retries = 0;
  before(async () => {
    redis = await startRedis();
    other = new Redis(redis.url);
    lanes = new TxLanes({
      url: redis.url,
      prefix: "t:",
      name: "t",
      logger: silentLogger(),
      assertReady: () => undefined,
      reader: () => ({}) as StoreReader,
      onRetry: () => retries++,
    });
    await waitFor(() => lanes.ready(), { what: "lanes connected" });
  });
  after(async () => {
    await lanes?.close();
    other?.disconnect();
    await redis?.cleanup();
  });

  it("clears the failed read's WATCH: the next transaction on the lane commits on its first EXEC", async () => {
    const bad = keys.obj("httptriggers", "default", "bad");
    await other.sadd(bad, "not a trigger");
    const trigger = {
      kind: "HttpTrigger",
      metadata: { namespace: "default", name: "bad" },
      spec: { function: "f", path: "/bad" },
    } as unknown as AnyObject;
    let first: Redis | undefined;
    const failed = await lanes
      .enqueue((_r, conn) => {
        first = conn;
        return Promise.resolve({ writes: { put: [trigger] }, result: "committed" });
      })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(String(failed)).to.match(/WRONGTYPE/);
    // The key the failed read watched changes before the lane's next transaction.
    await other.del(bad);
    await new Promise((r) => setImmediate(r));
    retries = 0;
    let second: Redis | undefined;
    const result = await lanes.enqueue((_r, conn) => {
      second = conn;
      return Promise.resolve({ writes: { marker: "t:marker" }, result: "committed" });
    });
    expect(second, "the same lane").to.equal(first);
    expect(result).to.equal("committed");
    expect(retries, "EXECs aborted and run again").to.equal(0);
    expect(await other.get("t:marker")).to.equal("1");
  });
});
