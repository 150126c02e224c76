import { expect } from "chai";
import { Codecs, subjects } from "@fizz/events";
import { connectNats, silentLogger, type NatsConnection } from "@fizz/kit";
import { startNats, waitFor, type TestServer } from "@fizz/testkit";
import { UpdateBarrier } from "../src/barrier";
import type { Change } from "../src/operations";

const s = subjects("fizz.v1");
const TIMEOUT_MS = 5000;

/** Timers alive in this process: a barrier that ended must have cleared its two. */
const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

const change = {
  kind: "functions",
  op: "updated",
  object: { metadata: { namespace: "default", name: "f", revision: 2, uid: "u" } },
} as unknown as Change;

/**
 * The update barrier when its connection cannot carry the question (closed) or it is stopped
 * while a barrier waits: it ends at once with its timers cleared, and never throws (the write it
 * follows is committed and answered either way).
 */
describe("registry update barrier on a closed connection and on stop (real NATS)", function () {
  this.timeout(30_000);
  let nats: TestServer;
  let gw: NatsConnection;
  const results: string[] = [];
  let barrier: UpdateBarrier | undefined;
  let nc: NatsConnection | undefined;

  before(async () => {
    nats = await startNats();
    gw = await connectNats({ url: nats.url, name: "gw", logger: silentLogger() });
  });
  afterEach(async () => {
    barrier?.stop();
    await nc?.close();
  });
  after(async () => {
    await gw?.close();
    await nats?.cleanup();
  });

  /** A barrier that knows one live gateway, which never answers. */
  const started = async (): Promise<UpdateBarrier> => {
    nc = await connectNats({ url: nats.url, name: "registry", logger: silentLogger() });
    results.length = 0;
    const b = new UpdateBarrier({
      nc,
      subjects: s,
      sender: "registry",
      logger: silentLogger(),
      timeoutMs: TIMEOUT_MS,
      onResult: (r) => results.push(r),
    });
    barrier = b;
    b.start();
    await nc.flush();
    await waitFor(
      async () => {
        gw.publish(
          s.gatewayPresence,
          Codecs.gatewayPresence.encode({ gateway: "gw-1", intervalMs: 60_000 }, "gw-1"),
        );
        await gw.flush();
        return b.live().length === 1;
      },
      { what: "the barrier to know the gateway" },
    );
    return b;
  };

  it("fails at once when the question cannot be published, its timers cleared", async () => {
    const b = await started();
    await nc?.close();
    const before = timers();
    const t0 = Date.now();
    await b.afterChange(change);
    const ms = Date.now() - t0;
    expect(results).to.deep.equal(["incomplete"]);
    expect(ms, "did not wait for the timeout").to.be.below(500);
    expect(timers(), "timers left running").to.equal(before);
  });

  it("ends a running barrier at once on stop, its timers cleared", async () => {
    const b = await started();
    const before = timers();
    const t0 = Date.now();
    const running = b.afterChange(change);
    await new Promise((r) => setTimeout(r, 100));
    expect(results, "still waiting for the gateway").to.deep.equal([]);
    b.stop();
    await running;
    expect(Date.now() - t0, "did not wait for the timeout").to.be.below(1000);
    expect(results).to.deep.equal(["incomplete"]);
    expect(timers(), "timers left running").to.equal(before);
  });
});
