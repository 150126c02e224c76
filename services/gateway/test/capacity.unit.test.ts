import { expect } from "chai";
import { FizzError, type Lease, type LeaseRequest } from "@fizz/events";
import type { Dispatcher } from "undici";
import { LeaseManager, type LeaseManagerOptions } from "../src/front-door/leases";
import type { WaitTicket } from "../src/front-door/wait-queue";
import { FakeClock, settle } from "@fizz/testkit";

/**
 * The capacity limit: scale out while requests exceed the held slots, then (NO_CAPACITY) a FIFO
 * wait with a deadline and a length limit, ending in 429 TOO_MANY_REQUESTS.
 */
function lease(id: string, over: Partial<Lease> = {}): Lease {
  return {
    instanceId: id,
    address: `http://127.0.0.1:${1000 + Number(id.replace(/\D/g, "") || 0)}`,
    function: { namespace: "default", name: "hello", revision: 1 },
    slots: 1,
    concurrency: 1,
    timeoutMs: 60_000,
    ...over,
  };
}

type Reply = Lease | FizzError | ((req: LeaseRequest) => Lease | FizzError);

/** A scheduler stand-in answering from a list, then NO_CAPACITY; records when it was asked. */
function manager(replies: Reply[], opts: Partial<LeaseManagerOptions> = {}) {
  const calls: LeaseRequest[] = [];
  const at: number[] = [];
  const rejected: string[] = [];
  const clock = new FakeClock();
  const m = new LeaseManager({
    gateway: "gateway-test",
    dispatcher: () => ({}) as Dispatcher,
    clock,
    request: async (req) => {
      calls.push(req);
      at.push(clock.now());
      await settle(); // answers later, as over NATS
      const next = replies.shift() ?? new FizzError("NO_CAPACITY", "at maxInstances");
      const r = typeof next === "function" ? next(req) : next;
      if (r instanceof FizzError) throw r;
      return r;
    },
    reaskMs: 20,
    onQueueRejected: (reason) => rejected.push(reason),
    ...opts,
  });
  return { m, clock, calls, at, rejected, fl: m.target("default", "hello") };
}

/** Moves the fake clock on until `p` settles (re-asks and deadlines are timers). */
async function drive<T>(clock: FakeClock, p: Promise<T>, limitMs = 120_000): Promise<T> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  for (let waited = 0; !done && waited < limitMs; waited += 5) await clock.advance(5);
  return p;
}

/** Whether `p` has settled by now (without waiting for it). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await settle();
  return done;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "resolved";
  } catch (err) {
    return (err as FizzError).code;
  }
}

describe("capacity limit", () => {
  const managers: LeaseManager[] = [];
  const track = <T extends { m: LeaseManager }>(x: T): T => {
    managers.push(x.m);
    return x;
  };
  afterEach(() => {
    for (const m of managers.splice(0)) m.close();
  });

  it("scales out while requests exceed the held slots, one lease request at a time", async () => {
    const { m, clock, calls, fl } = track(manager([lease("i1"), lease("i2"), lease("i3")]));
    const got = await drive(clock, Promise.all([m.acquire(fl), m.acquire(fl), m.acquire(fl)]));
    expect(got.map((e) => e.instanceId).sort()).to.deep.equal(["i1", "i2", "i3"]);
    expect(calls.map((c) => c.exclude)).to.deep.equal([[], ["i1"], ["i1", "i2"]]);
  });

  it("keeps scaling out for queued requests as fast as the scheduler grants instances", async () => {
    const { m, clock, calls, fl } = track(
      manager(
        ["i1", "i2", "i3", "i4", "i5", "i6"].map((id) => lease(id)),
        { maxRounds: 2, reaskMs: 60_000 },
      ),
    );
    const got = await drive(
      clock,
      Promise.all(Array.from({ length: 6 }, () => m.acquire(fl))),
      1000,
    );
    expect(new Set(got.map((e) => e.instanceId)).size).to.equal(6);
    expect(calls).to.have.length(6);
  });

  it("serves waiting requests in arrival order as slots free, and a newcomer does not jump the queue", async () => {
    const { m, clock, fl } = track(manager([lease("i1")]));
    const first = await m.acquire(fl);
    const order: string[] = [];
    const waiters = ["a", "b", "c"].map((name) => m.acquire(fl).then(() => order.push(name)));
    await clock.advance(20);
    expect(order, "nobody served while i1 is busy").to.deep.equal([]);
    expect(m.queued()).to.equal(3);
    m.release(first);
    expect(m.tryTake(fl), "the freed slot went to the queue, not to a newcomer").to.equal(
      undefined,
    );
    await settle();
    m.release(first);
    await settle();
    m.release(first);
    await Promise.all(waiters);
    expect(order).to.deep.equal(["a", "b", "c"]);
    expect(first.inFlight).to.equal(1);
  });

  it("hands waiting requests the slots of a new lease found by asking again", async () => {
    const { m, clock, calls, at, fl } = track(
      manager([
        lease("i1"),
        new FizzError("NO_CAPACITY", "full"),
        new FizzError("NO_CAPACITY", "full"),
        lease("i2", { slots: 2 }),
      ]),
    );
    await m.acquire(fl);
    const got = await drive(clock, Promise.all([m.acquire(fl), m.acquire(fl)]));
    expect(got.map((e) => e.instanceId)).to.deep.equal(["i2", "i2"]);
    expect(calls).to.have.length(4);
    // Re-asked at a bounded rate (reaskMs), not once per waiting request or in a tight loop.
    for (let i = 2; i < at.length; i++)
      expect((at[i] as number) - (at[i - 1] as number)).to.be.at.least(20);
  });

  it("answers 429 TOO_MANY_REQUESTS when no slot frees before the queue timeout", async () => {
    const { m, clock, fl, rejected } = track(manager([lease("i1")], { queueTimeoutMs: 60 }));
    await m.acquire(fl);
    const code = codeOf(m.acquire(fl));
    await clock.advance(59);
    expect(await settled(code), "still waiting before the deadline").to.equal(false);
    await clock.advance(1);
    expect(await code).to.equal("TOO_MANY_REQUESTS");
    expect(rejected).to.deep.equal(["timeout"]);
    expect(m.queued()).to.equal(0);
  });

  it("caps the wait at the function's timeout when that is shorter", async () => {
    const { m, clock, fl } = track(
      manager([lease("i1", { timeoutMs: 40 })], { queueTimeoutMs: 60_000 }),
    );
    await m.acquire(fl);
    const code = codeOf(m.acquire(fl));
    await clock.advance(39);
    expect(await settled(code), "still waiting before the function's timeout").to.equal(false);
    await clock.advance(1);
    expect(await code).to.equal("TOO_MANY_REQUESTS");
  });

  it("refuses at once with 429 when the queue is full", async () => {
    const { m, clock, fl, rejected } = track(manager([lease("i1")], { queueMax: 2 }));
    await m.acquire(fl);
    const queued = [m.acquire(fl), m.acquire(fl)];
    await clock.advance(10);
    expect(await codeOf(m.acquire(fl))).to.equal("TOO_MANY_REQUESTS");
    expect(rejected).to.deep.equal(["full"]);
    expect(m.queued()).to.equal(2);
    m.close();
    for (const q of queued) expect(await codeOf(q)).to.equal("UNAVAILABLE");
  });

  it("takes a request whose client went away out of the queue; its turn passes to the next", async () => {
    const { m, clock, fl } = track(manager([lease("i1")]));
    const first = await m.acquire(fl);
    const ticket: WaitTicket = {};
    const gone = m.acquire(fl, undefined, ticket);
    const next = m.acquire(fl);
    await clock.advance(10);
    ticket.cancel?.();
    expect(await codeOf(gone)).to.not.equal("resolved");
    expect(m.queued()).to.equal(1);
    m.release(first);
    expect((await next).instanceId).to.equal("i1");
    expect(first.inFlight).to.equal(1);
  });

  it("never hands a waiting request the slot of an instance that just failed; it asks for another", async () => {
    const { m, clock, calls, fl } = track(
      manager([lease("i1"), new FizzError("NO_CAPACITY", "full"), lease("i2")], { reaskMs: 5000 }),
    );
    const first = await m.acquire(fl);
    const waiting = m.acquire(fl);
    await clock.advance(10);
    m.drop(first, true);
    m.release(first);
    expect((await drive(clock, waiting, 1000)).instanceId).to.equal("i2");
    expect(calls[2]?.failed).to.deep.equal(["i1"]);
  });

  it("answers every waiting request with the scheduler's error when the function is gone", async () => {
    const { m, clock, fl } = track(
      manager([
        lease("i1"),
        new FizzError("NO_CAPACITY", "full"),
        new FizzError("NOT_FOUND", "function hello not found"),
      ]),
    );
    await m.acquire(fl);
    const codes = await drive(clock, Promise.all([codeOf(m.acquire(fl)), codeOf(m.acquire(fl))]));
    expect(codes).to.deep.equal(["NOT_FOUND", "NOT_FOUND"]);
  });

  it("asks at once for the new revision when the function changes under waiting requests", async () => {
    const rev2 = { namespace: "default", name: "hello", revision: 2 };
    const { m, clock, calls, fl } = track(
      manager(
        [lease("i1"), new FizzError("NO_CAPACITY", "full"), lease("v2", { function: rev2 })],
        {
          reaskMs: 5000,
        },
      ),
    );
    await m.acquire(fl);
    const waiting = m.acquire(fl);
    await clock.advance(20);
    m.functionChanged("updated", "default", "hello", 2);
    expect((await drive(clock, waiting, 1000)).instanceId).to.equal("v2");
    expect(calls[2]?.minRevision).to.equal(2);
  });

  it("never queues a retry that avoids a busy instance: NO_CAPACITY goes back to the caller", async () => {
    const { m, fl } = track(manager([lease("i1", { slots: 5 })]));
    await m.acquire(fl);
    expect(await codeOf(m.acquire(fl, "i1"))).to.equal("NO_CAPACITY");
    expect(m.queued()).to.equal(0);
  });
});
