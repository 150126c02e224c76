import type { Socket } from "node:net";
import { expect } from "chai";
import { FizzError } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { startRedis, waitFor, type TestServer } from "@fizz/testkit";
import { readBatch } from "../src/redis-batch";
import { TxLanes } from "../src/store-tx";
import type { StoreReader } from "../src/store-types";

/**
 * A transaction lane's connection dropping while a command of it is in flight (a WATCH and its
 * reads, or the MULTI/EXEC): the command is never resent (its WATCH would be gone), so it must
 * fail. Before, ioredis dropped it on reconnect without settling it: the write hung forever, and
 * every transaction queued behind it on that lane (and the store's close) with it.
 */
describe("transaction lanes when the connection drops (real Redis)", function () {
  this.timeout(30_000);
  let redis: TestServer;
  let lanes: TxLanes;
  before(async () => {
    redis = await startRedis();
    lanes = new TxLanes({
      url: redis.url,
      prefix: "t:",
      name: "t",
      logger: silentLogger(),
      assertReady: () => undefined,
      reader: () => ({}) as StoreReader,
    });
    await waitFor(() => lanes.ready(), { what: "lanes connected" });
  });
  after(async () => {
    await lanes?.close();
    await redis?.cleanup();
  });

  it("fails a transaction whose read was in flight as UNAVAILABLE, and the lane goes on", async () => {
    const attempt = lanes.enqueue(async (_r, conn) => {
      const read = readBatch(conn, ["t:k"], (p) => p.get("t:k"));
      // The socket goes with the WATCH and GET written and unanswered.
      (conn as unknown as { stream: Socket }).stream.destroy();
      await read;
      return { writes: {}, result: "committed" };
    });
    const outcome = await Promise.race([
      attempt.then(
        (v) => ({ settled: "resolved", v }),
        (err: unknown) => ({ settled: "rejected", err }),
      ),
      new Promise<{ settled: string }>((r) => setTimeout(() => r({ settled: "hung" }), 5000)),
    ]);
    expect(outcome.settled).to.equal("rejected");
    const err = (outcome as { err: unknown }).err;
    expect(err).to.be.instanceOf(FizzError);
    expect((err as FizzError).code).to.equal("UNAVAILABLE");
    await waitFor(() => lanes.ready(), { what: "lanes reconnected" });
    // One transaction per lane and one more: none waits behind a stuck one.
    const results = await Promise.all(
      Array.from({ length: 9 }, (_, i) =>
        lanes.enqueue(async (_r, conn) => {
          await readBatch(conn, [`t:n${i}`], (p) => p.get(`t:n${i}`));
          return { writes: {}, result: i };
        }),
      ),
    );
    expect(results).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });
});
