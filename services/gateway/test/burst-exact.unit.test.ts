import { expect } from "chai";
import { FizzError, type Lease, type LeaseRequest } from "@fizz/events";
import type { Dispatcher } from "undici";
import { FakeClock } from "@fizz/testkit";
import { LeaseManager, type LeaseEntry, type LeaseManagerOptions } from "../src/front-door/leases";

/**
 * Issue 15's burst guarantee, on the gateway's side: N first requests to a function with
 * concurrency C, all in flight at once (none answered before the last arrives), end up on exactly
 * ceil(N / C) instances: never fewer (a request must not squeeze onto a full instance, and a lease
 * request lost to an outage is asked again), never more (concurrent askers share one lease
 * request, and one is only sent when every held slot is taken).
 */

const ANSWER_MS = 10;

/**
 * A scheduler for one gateway: a new instance of concurrency C for each lease request, all of its
 * slots granted (as the scheduler does for a lone member of a specialization), after ANSWER_MS.
 * It refuses to be asked while the gateway has a held instance it did not exclude: that instance
 * still has free slots, so the ask would have been one too many.
 */
function manager(
  concurrency: number,
  opts: { fail?: number[]; partial?: boolean } & Partial<LeaseManagerOptions> = {},
) {
  const clock = new FakeClock();
  const asks: LeaseRequest[] = [];
  const granted: string[] = [];
  const fail = new Set(opts.fail ?? []);
  const m = new LeaseManager({
    gateway: "gateway-test",
    dispatcher: () => ({}) as Dispatcher,
    clock,
    request: async (req): Promise<Lease> => {
      const n = asks.push(req);
      await clock.sleep(ANSWER_MS);
      if (fail.has(n)) throw new FizzError("UNAVAILABLE", "the poolkeeper is restarting");
      const stray = granted.filter(
        (id) => !req.exclude.includes(id) && req.topUp?.instanceId !== id,
      );
      if (stray.length > 0) throw new Error(`asked while ${stray.join(", ")} still had free slots`);
      const lease = (id: string) => ({
        instanceId: id,
        address: `http://127.0.0.1:${2000 + Number(id.slice(1))}`,
        function: { namespace: "default", name: "burst", revision: 1 },
        slots: concurrency,
        concurrency,
        timeoutMs: 60_000,
      });
      if (req.topUp) {
        if (!opts.partial || req.topUp.claim !== `claim-${req.topUp.instanceId}`)
          throw new Error(`a top-up of ${req.topUp.instanceId} that was never answered with more`);
        return lease(req.topUp.instanceId);
      }
      const id = `i${granted.length + 1}`;
      granted.push(id);
      // As the scheduler answers a gateway asking `partial`: one slot before the claim's finish.
      if (opts.partial && req.partial && concurrency > 1)
        return { ...lease(id), slots: 1, more: `claim-${id}` };
      return lease(id);
    },
    ...opts,
  });
  return { m, clock, asks, granted, fl: m.target("default", "burst") };
}

/** Moves the fake clock on until every promise settled (lease answers and pauses are timers). */
async function drive<T>(clock: FakeClock, ps: Promise<T>[]): Promise<T[]> {
  let done = 0;
  for (const p of ps)
    p.then(
      () => done++,
      () => done++,
    );
  for (let waited = 0; done < ps.length && waited < 60_000; waited += 1) await clock.advance(1);
  return Promise.all(ps);
}

/** Instance id → requests on it; checks that no instance holds more than its slots. */
function spread(got: LeaseEntry[]): Map<string, number> {
  const by = new Map<string, number>();
  for (const e of got) {
    by.set(e.instanceId, (by.get(e.instanceId) ?? 0) + 1);
    expect(e.inFlight, `${e.instanceId} in flight`).to.be.at.most(e.slots);
  }
  return by;
}

describe("burst of first requests: exactly ceil(requests / concurrency) instances", () => {
  const managers: LeaseManager[] = [];
  afterEach(() => {
    for (const m of managers.splice(0)) m.close();
  });

  const pairs: [number, number][] = [
    [1, 4],
    [4, 4],
    [5, 4],
    [6, 4],
    [10, 5],
    [11, 5],
    [12, 10],
    [25, 10],
    [200, 50],
  ];
  for (const [n, c] of pairs) {
    it(`${n} requests arriving at once, concurrency ${c}: ${Math.ceil(n / c)} instances`, async () => {
      const { m, clock, asks, fl } = manager(c);
      managers.push(m);
      const got = await drive(
        clock,
        Array.from({ length: n }, () => m.acquire(fl)),
      );
      expect(spread(got).size).to.equal(Math.ceil(n / c));
      expect(asks, "one lease request per instance").to.have.length(Math.ceil(n / c));
    });
  }

  for (const [n, c] of pairs) {
    it(`answered one slot first and topped up: ${n} requests at once, concurrency ${c}: ${Math.ceil(n / c)} instances`, async () => {
      const { m, clock, asks, fl } = manager(c, { partial: true });
      managers.push(m);
      const got = await drive(
        clock,
        Array.from({ length: n }, () => m.acquire(fl)),
      );
      expect(spread(got).size).to.equal(Math.ceil(n / c));
      const topUps = asks.filter((a) => a.topUp !== undefined);
      expect(asks.length - topUps.length, "one new instance per lease request").to.equal(
        Math.ceil(n / c),
      );
      // One top-up for each instance that more than one request needed.
      const full = Math.floor(n / c) + (n % c > 1 ? 1 : 0);
      expect(topUps).to.have.length(c > 1 ? full : 0);
    });
  }

  it("a top-up that fails is not asked again: the next lease request excludes the instance", async () => {
    // Ask 2 (the top-up of i1) fails: the three requests beyond i1's first slot then need a
    // lease of their own, and i1 (full, its `more` spent) is excluded, not topped up again.
    const { m, clock, asks, fl } = manager(4, { partial: true, fail: [2] });
    managers.push(m);
    const got = await drive(
      clock,
      Array.from({ length: 4 }, () => m.acquire(fl)),
    );
    expect(asks[1]?.topUp?.instanceId).to.equal("i1");
    expect(asks[2]?.topUp, "no second top-up of i1").to.equal(undefined);
    expect(asks[2]?.exclude).to.deep.equal(["i1"]);
    expect(spread(got).get("i1")).to.equal(1);
  });

  it("requests arriving one by one while earlier lease requests are answered still fill each instance before the next", async () => {
    const { m, clock, asks, fl } = manager(4);
    managers.push(m);
    const ps: Promise<LeaseEntry>[] = [];
    // 14 requests 3 ms apart: some arrive while a lease request is out, some after its answer.
    for (let i = 0; i < 14; i++) {
      ps.push(m.acquire(fl));
      await clock.advance(3);
    }
    const got = await drive(clock, ps);
    expect([...spread(got).values()].sort()).to.deep.equal([2, 4, 4, 4]);
    expect(asks).to.have.length(4);
  });

  it("past the scale-out rounds, queued requests still get exactly ceil(requests / concurrency) instances", async () => {
    const { m, clock, asks, fl } = manager(3, { maxRounds: 2, reaskMs: 60_000 });
    managers.push(m);
    const got = await drive(
      clock,
      Array.from({ length: 30 }, () => m.acquire(fl)),
    );
    expect(spread(got).size).to.equal(10);
    expect(asks).to.have.length(10);
  });

  it("a lease request lost to an outage is asked again: the waiting requests get an instance of their own", async () => {
    // The second and third asks (for the fifth and sixth requests) fail; the held four keep
    // their slots, so the only way on is a second instance.
    const { m, clock, asks, fl } = manager(4, { fail: [2, 3] });
    managers.push(m);
    const got = await drive(
      clock,
      Array.from({ length: 6 }, () => m.acquire(fl)),
    );
    expect([...spread(got).values()].sort()).to.deep.equal([2, 4]);
    expect(asks).to.have.length(4);
    expect(asks[3]?.exclude, "the full instance stays excluded").to.deep.equal(["i1"]);
  });

  it("a request arriving after an earlier one was answered reuses its slot: no new instance (why a burst must be concurrent)", async () => {
    const { m, clock, asks, fl } = manager(4);
    managers.push(m);
    const first = await drive(
      clock,
      Array.from({ length: 4 }, () => m.acquire(fl)),
    );
    m.release(first[0] as LeaseEntry);
    const late = await drive(clock, [m.acquire(fl)]);
    expect(late[0]?.instanceId).to.equal("i1");
    expect(asks).to.have.length(1);
  });
});
