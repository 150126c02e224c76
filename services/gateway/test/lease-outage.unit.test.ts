import { expect } from "chai";
import { FizzError, type Lease } from "@fizz/events";
import type { Dispatcher } from "undici";
import { LeaseManager } from "../src/front-door/leases";
import { FakeClock } from "@fizz/testkit";

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
  const clock = new FakeClock();
  const m = new LeaseManager({
    gateway: "gateway-test",
    dispatcher: () => ({}) as Dispatcher,
    queueTimeoutMs,
    clock,
    request: () => {
      calls++;
      if (calls <= down)
        return Promise.reject(new FizzError("UNAVAILABLE", "nothing answers on scheduler.lease"));
      return Promise.resolve(lease);
    },
  });
  return { m, clock, fl: m.target("default", "hello"), calls: () => calls };
}

describe("lease requests during a scheduler or poolkeeper outage", () => {
  it("waits for the scheduler to come back and then serves the request", async () => {
    const { m, clock, fl, calls } = manager(4);
    const acquired = m.acquire(fl);
    // Four pauses of at most 100, 200, 400 and 500 ms: within the 2 s queue wait.
    await clock.advance(1200);
    const e = await acquired;
    expect(e.instanceId).to.equal("i1");
    expect(calls()).to.equal(5);
    m.close();
  });

  it("answers UNAVAILABLE once the queue wait is over", async () => {
    const { m, clock, fl, calls } = manager(Infinity, 300);
    let err: FizzError | undefined;
    void m.acquire(fl).catch((e: unknown) => (err = e as FizzError));
    await clock.advance(299);
    expect(err, "still riding out the outage").to.equal(undefined);
    expect(calls(), "asked again during the wait").to.be.greaterThan(2);
    await clock.advance(1);
    expect(err?.code).to.equal("UNAVAILABLE");
    m.close();
  });

  it("does not wait on errors that are not an outage", async () => {
    let calls = 0;
    const m = new LeaseManager({
      gateway: "gateway-test",
      dispatcher: () => ({}) as Dispatcher,
      request: () => {
        calls++;
        return Promise.reject(new FizzError("NOT_FOUND", "no such function"));
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
