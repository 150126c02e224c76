import { expect } from "chai";
import { FizzError, type Lease } from "@fizz/events";
import type { Dispatcher } from "undici";
import { LeaseManager } from "../src/front-door/leases";

/**
 * A scheduler or poolkeeper that crashed is restarted by the supervisor within seconds: a request
 * that needs a new lease meanwhile waits for it (within the queue wait) instead of failing.
 */
const lease: Lease = {
  instanceId: "i1",
  address: "http://127.0.0.1:1001",
  function: { namespace: "default", name: "hello", revision: 1 },
  slots: 1,
  concurrency: 1,
  timeoutMs: 60_000,
};

function manager(down: number, queueTimeoutMs = 2000) {
  let calls = 0;
  const m = new LeaseManager({
    gateway: "gateway-test",
    dispatcher: () => ({}) as Dispatcher,
    queueTimeoutMs,
    request: async () => {
      calls++;
      if (calls <= down) throw new FizzError("UNAVAILABLE", "nothing answers on scheduler.lease");
      return lease;
    },
  });
  return { m, fl: m.target("default", "hello"), calls: () => calls };
}

describe("lease requests during a scheduler or poolkeeper outage", () => {
  it("waits for the scheduler to come back and then serves the request", async () => {
    const { m, fl, calls } = manager(4);
    const e = await m.acquire(fl);
    expect(e.instanceId).to.equal("i1");
    expect(calls()).to.equal(5);
    m.close();
  });

  it("answers UNAVAILABLE once the queue wait is over", async () => {
    const { m, fl } = manager(Infinity, 300);
    const started = Date.now();
    const err = await m.acquire(fl).then(
      () => undefined,
      (e: unknown) => e as FizzError,
    );
    expect(err?.code).to.equal("UNAVAILABLE");
    expect(Date.now() - started).to.be.within(250, 1500);
    m.close();
  });

  it("does not wait on errors that are not an outage", async () => {
    let calls = 0;
    const m = new LeaseManager({
      gateway: "gateway-test",
      dispatcher: () => ({}) as Dispatcher,
      request: async () => {
        calls++;
        throw new FizzError("NOT_FOUND", "no such function");
      },
    });
    const err = await m.acquire(m.target("default", "gone")).then(
      () => undefined,
      (e: unknown) => e as FizzError,
    );
    expect(err?.code).to.equal("NOT_FOUND");
    expect(calls).to.equal(1);
    m.close();
  });
});
