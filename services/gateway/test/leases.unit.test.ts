import { expect } from "chai";
import { FizzError, type Lease, type LeaseRequest } from "@fizz/events";
import type { Dispatcher } from "undici";
import { LeaseManager } from "../src/front-door/leases";
import { FakeClock, settle } from "@fizz/testkit";

function lease(id: string, over: Partial<Lease> = {}): Lease {
  return {
    instanceId: id,
    address: `http://127.0.0.1:${1000 + Number(id.replace(/\D/g, "") || 0)}`,
    function: { namespace: "default", name: "hello", revision: 1 },
    slots: 2,
    concurrency: 10,
    timeoutMs: 1000,
    ...over,
  };
}

/** A scheduler stand-in: answers from a queue of replies, recording every request. */
function fakeScheduler(replies: (Lease | FizzError)[]) {
  const calls: LeaseRequest[] = [];
  const request = async (req: LeaseRequest): Promise<Lease> => {
    calls.push(req);
    await settle(); // answers later, as over NATS: concurrent askers find the request in flight
    const next = replies.shift();
    if (!next) throw new FizzError("NO_CAPACITY", "no more");
    if (next instanceof FizzError) throw next;
    return next;
  };
  return { calls, request };
}

function manager(replies: (Lease | FizzError)[]) {
  const sched = fakeScheduler(replies);
  const clock = new FakeClock();
  const m = new LeaseManager({
    gateway: "gateway-test",
    request: sched.request,
    dispatcher: () => ({}) as Dispatcher,
    clock,
  });
  return { m, clock, calls: sched.calls, fl: m.target("default", "hello") };
}

describe("leases", () => {
  it("takes a free slot synchronously and never asks the scheduler while one is free", async () => {
    const { m, calls, fl } = manager([lease("i1")]);
    expect(m.tryTake(fl)).to.equal(undefined);
    const first = await m.acquire(fl);
    expect(calls).to.have.length(1);
    const second = m.tryTake(fl);
    expect(second).to.equal(first);
    expect(first.inFlight).to.equal(2);
    expect(m.tryTake(fl), "both slots taken").to.equal(undefined);
    m.release(first);
    expect(m.tryTake(fl)).to.equal(first);
    expect(calls).to.have.length(1);
  });

  it("shares one scheduler request among concurrent first requests (single flight)", async () => {
    const { m, calls, fl } = manager([lease("i1", { slots: 100 })]);
    const got = await Promise.all(Array.from({ length: 100 }, () => m.acquire(fl)));
    expect(calls).to.have.length(1);
    expect(new Set(got.map((e) => e.instanceId))).to.deep.equal(new Set(["i1"]));
    expect(got[0]?.inFlight).to.equal(100);
  });

  it("asks again with the full leases excluded when every slot is taken", async () => {
    const { m, calls, fl } = manager([lease("i1", { slots: 1 }), lease("i2", { slots: 1 })]);
    const a = await m.acquire(fl);
    const b = await m.acquire(fl);
    expect([a.instanceId, b.instanceId]).to.deep.equal(["i1", "i2"]);
    expect(calls[1]?.exclude).to.deep.equal(["i1"]);
    expect(calls[1]?.gateway).to.equal("gateway-test");
  });

  it("packs requests onto the oldest lease first", async () => {
    const { m, fl } = manager([lease("i1", { slots: 2 }), lease("i2", { slots: 2 })]);
    const a = await m.acquire(fl);
    await m.acquire(fl);
    await m.acquire(fl); // i2
    m.release(a);
    expect(m.tryTake(fl)?.instanceId).to.equal("i1");
  });

  it("reports failed instances on the next lease request, once", async () => {
    const { m, calls, fl } = manager([lease("i1"), lease("i2"), lease("i3", { slots: 1 })]);
    const a = await m.acquire(fl);
    m.release(a);
    m.drop(a, true);
    expect(fl.leases).to.have.length(0);
    const b = await m.acquire(fl);
    expect(calls[1]?.failed).to.deep.equal(["i1"]);
    m.release(b);
    m.drop(b, false);
    await m.acquire(fl);
    expect(calls[2]?.failed).to.deep.equal([]);
  });

  it("reports a failed instance to the scheduler at once, without waiting for another request", async () => {
    const { m, calls, fl } = manager([lease("i1"), lease("i2")]);
    const a = await m.acquire(fl);
    m.drop(a, true);
    m.release(a);
    expect(calls).to.have.length(2);
    expect(calls[1]?.failed).to.deep.equal(["i1"]);
    await fl.pending;
    expect(fl.failed.size, "reported once").to.equal(0);
  });

  it("avoids one instance when asked (429 retry) and excludes it from the lease request", async () => {
    const { m, calls, fl } = manager([lease("i1", { slots: 5 }), lease("i2", { slots: 5 })]);
    await m.acquire(fl);
    const other = await m.acquire(fl, "i1");
    expect(other.instanceId).to.equal("i2");
    expect(calls[1]?.exclude).to.deep.equal(["i1"]);
  });

  it("passes scheduler errors to every waiter", async () => {
    const { m, calls, fl } = manager([new FizzError("NOT_FOUND", "no such function")]);
    const results = await Promise.allSettled([m.acquire(fl), m.acquire(fl), m.acquire(fl)]);
    expect(calls).to.have.length(1);
    for (const r of results) {
      expect(r.status).to.equal("rejected");
      expect(((r as PromiseRejectedResult).reason as FizzError).code).to.equal("NOT_FOUND");
    }
  });

  it("queues instead of overloading a full instance when the scheduler answers NO_CAPACITY", async () => {
    const { m, clock, calls, fl } = manager([
      lease("i1", { slots: 1 }),
      new FizzError("NO_CAPACITY", "full"),
    ]);
    const a = await m.acquire(fl);
    let second: string | undefined;
    const waiting = m.acquire(fl).then((e) => (second = e.instanceId));
    await clock.advance(30);
    expect(second, "still waiting: i1 has no free slot").to.equal(undefined);
    expect(a.inFlight).to.equal(1);
    m.release(a);
    await waiting;
    expect(second).to.equal("i1");
    expect(calls).to.have.length(2);
    m.close();
  });

  it("sends the revision it knows as minRevision in every lease request", async () => {
    const rev = (revision: number) => ({ namespace: "default", name: "hello", revision });
    const { m, calls, fl } = manager([
      lease("i1", { function: rev(1) }),
      lease("i2", { function: rev(2) }),
    ]);
    await m.acquire(fl);
    expect(calls[0]?.minRevision, "nothing known yet").to.equal(undefined);
    m.functionChanged("updated", "default", "hello", 2);
    expect((await m.acquire(fl)).instanceId).to.equal("i2");
    expect(calls[1]?.minRevision).to.equal(2);
  });

  it("drops leases named in an instances event or older than its revision", async () => {
    const { m, fl } = manager([
      lease("i1", { slots: 1 }),
      lease("i2", { slots: 1 }),
      lease("i3", { slots: 1, function: { namespace: "default", name: "hello", revision: 2 } }),
    ]);
    await m.acquire(fl);
    await m.acquire(fl);
    m.instancesChanged("default", "hello", 1, ["i1"]);
    expect(fl.leases.map((e) => e.instanceId)).to.deep.equal(["i2"]);
    await m.acquire(fl);
    m.instancesChanged("default", "hello", 2, []);
    expect(fl.leases.map((e) => e.instanceId)).to.deep.equal(["i3"]);
  });

  it("drops leases of an updated or deleted function and refuses leases older than the seen revision", async () => {
    const rev = (revision: number) => ({ namespace: "default", name: "hello", revision });
    const { m, calls, fl } = manager([
      lease("i1", { function: rev(1) }),
      lease("old", { function: rev(1) }),
      lease("i2", { function: rev(2) }),
    ]);
    await m.acquire(fl);
    m.functionChanged("updated", "default", "hello", 2);
    expect(fl.leases).to.have.length(0);
    const e = await m.acquire(fl);
    expect(e.instanceId, "the stale rev-1 lease is ignored").to.equal("i2");
    expect(calls).to.have.length(3);
    m.functionChanged("deleted", "default", "hello", 2);
    expect(fl.leases).to.have.length(0);
  });

  it("reports instances used since the last report, and in-flight ones every time", async () => {
    const { m, clock, fl } = manager([lease("i1", { slots: 3 })]);
    const a = await m.acquire(fl);
    m.tryTake(fl);
    await clock.advance(1000);
    const releasedAt = clock.now();
    m.release(a);
    expect(m.takeReport()).to.deep.equal([
      {
        instanceId: "i1",
        namespace: "default",
        function: "hello",
        inFlight: 1,
        served: 1,
        lastUsedAt: releasedAt,
      },
    ]);
    expect(m.takeReport(), "still in flight").to.have.length(1);
    m.release(a);
    expect(m.takeReport()[0]?.served).to.equal(1);
    expect(m.takeReport(), "idle since").to.deep.equal([]);
  });

  it("keeps addresses in use while leases are held or requests are in flight", async () => {
    const { m, fl } = manager([lease("i1")]);
    const a = await m.acquire(fl);
    expect([...m.addressesInUse()]).to.deep.equal([a.address]);
    m.drop(a, false);
    expect([...m.addressesInUse()], "dropped but in flight").to.deep.equal([a.address]);
    m.release(a);
    m.takeReport();
    expect([...m.addressesInUse()]).to.deep.equal([]);
  });
});
