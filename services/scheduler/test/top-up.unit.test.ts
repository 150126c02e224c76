import { expect } from "chai";
import type { LeaseRequest } from "@fizz/events";
import { slotShare } from "../src/claims";
import { onUsageReport } from "../src/handlers";
import { loadOf } from "../src/instance-table";
import { envObj, fnObj, instanceFor } from "./fixtures";
import { leaseReq, world } from "./fakes";
import { GatewaySim } from "./gateway-sim";
import { drive, settle } from "@fizz/testkit";

/**
 * The top-up lease (docs/architecture.md "Cold path"): a gateway that asks with `partial` gets its
 * first slot of the instance it caused as soon as the instance is there, before the claim's finish
 * in Redis; the instance's free slots are not handed out until every member's share is recorded;
 * the rest of the gateway's share comes with a top-up, from whichever replica it asks.
 */

const partial = (
  fn: string,
  o: Parameters<typeof leaseReq>[1] & {
    topUp?: { instanceId: string; more?: string | undefined };
  } = {},
): LeaseRequest => ({
  ...leaseReq(fn, o),
  partial: true,
  ...(o.topUp ? { topUp: { instanceId: o.topUp.instanceId, claim: o.topUp.more ?? "" } } : {}),
});

/** Holds every claim finish of the world until `release`. */
function holdFinish(w: ReturnType<typeof world>): () => void {
  const finish = w.claims.finish.bind(w.claims);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  w.claims.finish = async (...args) => {
    await gate;
    return finish(...args);
  };
  return release;
}

describe("scheduler top-up leases (unit)", () => {
  let w: ReturnType<typeof world>;
  beforeEach(() => {
    w = world();
    w.registry.set(envObj("node"), fnObj("hello", { concurrency: 10 }));
  });
  afterEach(() => w.retirer.stop());

  it("answers the owner's member with one slot and `more` before the claim's finish", async () => {
    holdFinish(w);
    const first = await w.leases.lease(partial("hello", { gateway: "g1" }));
    expect(first.outcome).to.equal("specialized");
    expect(first.lease.slots).to.equal(1);
    expect(first.lease.more).to.be.a("string");
  });

  it("answers a gateway that did not ask `partial` after the finish with its whole share", async () => {
    const r = await w.leases.lease(leaseReq("hello", { gateway: "g1" }));
    expect(r.lease.slots).to.equal(10);
    expect(r.lease.more).to.equal(undefined);
  });

  it("never hands out a new instance's free slots before its shares are recorded; later askers join, and the top-up gets the share less nothing counted twice", async () => {
    const release = holdFinish(w);
    const first = await w.leases.lease(partial("hello", { gateway: "g1" }));
    const id = first.lease.instanceId;
    let secondDone = false;
    const second = w.leases.lease(leaseReq("hello", { gateway: "g2" })).finally(() => {
      secondDone = true;
    });
    let topDone = false;
    const top = w.leases
      .lease(partial("hello", { gateway: "g1", topUp: first.lease }))
      .finally(() => (topDone = true));
    await settle();
    expect(secondDone, "g2 got a lease before the shares were recorded").to.equal(false);
    expect(topDone, "the top-up was answered before the finish").to.equal(false);
    release();
    const [s, t] = await Promise.all([second, top]);
    expect(w.poolkeeper.specializeCalls).to.have.length(1);
    expect(s.outcome).to.equal("joined");
    expect(s.lease.instanceId).to.equal(id);
    expect(t.outcome).to.equal("topUp");
    expect(t.lease.instanceId).to.equal(id);
    expect(t.lease.slots).to.equal(slotShare(10, 2, 1));
    expect(t.lease.slots + s.lease.slots).to.equal(10);
    const tracked = w.table.get(id)!;
    expect(loadOf(tracked, w.clock.now())).to.equal(10);
  });

  it("another replica answers the top-up from the claim", async () => {
    const b = world({ shared: w.shared });
    const first = await w.leases.lease(partial("hello", { gateway: "g1" }));
    await settle();
    const t = await drive(
      w.clock,
      b.leases.lease(partial("hello", { gateway: "g1", topUp: first.lease })),
    );
    expect(t.outcome).to.equal("topUp");
    expect(t.lease.instanceId).to.equal(first.lease.instanceId);
    expect(t.lease.slots).to.equal(10);
    expect(b.table.get(t.lease.instanceId)?.usage.get("g1")?.pending).to.equal(10);
    expect(w.poolkeeper.specializeCalls).to.have.length(1);
    b.retirer.stop();
  });

  it("a top-up that names another gateway's member is an ordinary lease: none of the slots recorded to the members", async () => {
    const first = await w.leases.lease(partial("hello", { gateway: "g1" }));
    await settle();
    const t = await w.leases.lease(partial("hello", { gateway: "g2", topUp: first.lease }));
    expect(t.outcome).to.equal("specialized");
    expect(t.lease.instanceId).to.not.equal(first.lease.instanceId);
    expect(w.poolkeeper.specializeCalls).to.have.length(2);
  });

  it("a top-up naming an instance and claim of another function never grants that instance", async () => {
    w.registry.set(fnObj("other", { concurrency: 10 }));
    const theirs = await w.leases.lease(partial("other", { gateway: "g1" }));
    await settle();
    const mine = await w.leases.lease(partial("hello", { gateway: "g1", topUp: theirs.lease }));
    expect(mine.outcome).to.not.equal("topUp");
    expect(mine.lease.instanceId).to.not.equal(theirs.lease.instanceId);
    expect(mine.lease.function.name).to.equal("hello");
  });

  it("a top-up whose claim expired, on a replica that never knew the instance, is an ordinary lease", async () => {
    const first = await w.leases.lease(partial("hello", { gateway: "g1" }));
    await settle();
    // Another replica, which has no record of the slot, after the finished claim expired.
    const b = world({ shared: w.shared });
    await w.clock.advance(10_000);
    const t = await drive(
      w.clock,
      b.leases.lease(partial("hello", { gateway: "g1", topUp: first.lease })),
    );
    expect(t.outcome).to.not.equal("topUp");
    expect(t.lease.instanceId).to.not.equal(first.lease.instanceId);
    b.retirer.stop();
  });

  it("a late top-up on a replica that cannot know the share still gets the instance's free slots, not a second instance", async () => {
    // Replica b knows the instance (the specialized event) but not the claim's members, and the
    // finished claim expired: g1 used its one slot alone for a while before a second request came.
    const b = world({ shared: w.shared });
    b.loadCatalog();
    const first = await w.leases.lease(partial("hello", { gateway: "g1" }));
    await settle();
    const id = first.lease.instanceId;
    expect(b.table.get(id), "b adopted the instance from the event").to.not.equal(undefined);
    await w.clock.advance(10_000);
    const t = await drive(
      w.clock,
      b.leases.lease(partial("hello", { gateway: "g1", topUp: first.lease })),
    );
    expect(w.poolkeeper.specializeCalls).to.have.length(1);
    expect(t.lease.instanceId).to.equal(id);
    expect(t.lease.slots).to.equal(10);
    b.retirer.stop();
  });

  it("a top-up on another replica while the owner never finishes (crashed) is answered within seconds, not at the claim's TTL", async () => {
    const b = world({ shared: w.shared });
    b.loadCatalog();
    holdFinish(w); // never released: the owner died between its early answer and the finish
    const first = await w.leases.lease(partial("hello", { gateway: "g1" }));
    const id = first.lease.instanceId;
    const start = w.clock.now();
    const t = await drive(
      w.clock,
      b.leases.lease(partial("hello", { gateway: "g1", topUp: first.lease })),
    );
    expect(w.clock.now() - start, "waited for the claim's TTL").to.be.below(10_000);
    expect(t.lease.instanceId).to.equal(id);
    expect(w.poolkeeper.specializeCalls).to.have.length(1);
    b.retirer.stop();
  });

  it("when the claim cannot be finished, the early-answered member's share is still recorded once, and its top-up gets it", async () => {
    // The claim expired under the owner (finish answers undefined): no member list to split by.
    w.claims.finish = () => Promise.resolve(undefined);
    const first = await w.leases.lease(partial("hello", { gateway: "g1" }));
    await settle();
    const id = first.lease.instanceId;
    expect(w.table.get(id)?.usage.get("g1")?.pending).to.equal(10);
    const t = await w.leases.lease(partial("hello", { gateway: "g1", topUp: first.lease }));
    expect(t.outcome).to.equal("topUp");
    expect(t.lease.slots).to.equal(10);
    expect(w.table.get(id)?.usage.get("g1")?.pending).to.equal(10);
  });

  it("a top-up after its gateway reported on the instance counts as a grant again: the instance's slots are not handed out twice", async () => {
    const first = await w.leases.lease(partial("hello", { gateway: "g1" }));
    await settle();
    const id = first.lease.instanceId;
    // g1's report (its one request in flight) replaces the share the finish recorded for it.
    onUsageReport(w.model, {
      gateway: "g1",
      items: [
        {
          instanceId: id,
          namespace: "default",
          function: "hello",
          inFlight: 1,
          served: 0,
          lastUsedAt: 0,
        },
      ],
    });
    const t = await w.leases.lease(partial("hello", { gateway: "g1", topUp: first.lease }));
    expect(t.outcome).to.equal("topUp");
    expect(t.lease.slots).to.equal(10);
    expect(loadOf(w.table.get(id)!, w.clock.now())).to.equal(11);
    // g1 may now have 10 in flight there: another gateway is not granted its free slots.
    const other = await w.leases.lease(partial("hello", { gateway: "g2" }));
    expect(other.lease.instanceId).to.not.equal(id);
  });

  it("a replayed top-up while its share is still counted records nothing more", async () => {
    const first = await w.leases.lease(partial("hello", { gateway: "g1" }));
    await settle();
    const id = first.lease.instanceId;
    for (let i = 0; i < 2; i++) {
      const t = await w.leases.lease(partial("hello", { gateway: "g1", topUp: first.lease }));
      expect(t.outcome).to.equal("topUp");
    }
    expect(loadOf(w.table.get(id)!, w.clock.now())).to.equal(10);
  });

  for (const [n, instances, topUps] of [
    [10, 1, 1],
    [11, 2, 1],
    [40, 4, 4],
    [45, 5, 5],
  ] as const) {
    it(`a gateway topping up: ${n} requests at concurrency 10 create ${instances} instance(s)`, async () => {
      const gw = new GatewaySim(w.leases, "gateway-a", "hello", true);
      const placed = await Promise.all(Array.from({ length: n }, () => gw.request()));
      expect(w.poolkeeper.specializeCalls).to.have.length(instances);
      expect(new Set(placed).size).to.equal(instances);
      expect(gw.topUps).to.equal(topUps);
    });
  }

  it("two gateways topping up on two replicas never get more slots of an instance than its concurrency", async () => {
    const b = world({ shared: w.shared });
    w.poolkeeper.behave = async (req) => {
      await w.clock.sleep(20);
      return instanceFor(req.function, { concurrency: 10 });
    };
    const ga = new GatewaySim(w.leases, "gateway-a", "hello", true);
    const gb = new GatewaySim(b.leases, "gateway-b", "hello", true);
    const placed = await drive(
      w.clock,
      Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? gb : ga).request())),
    );
    const per = new Map<string, number>();
    for (const id of placed) per.set(id, (per.get(id) ?? 0) + 1);
    for (const gw of [ga, gb]) for (const l of gw.leases) expect(l.inFlight).to.be.at.most(l.slots);
    const granted = new Map<string, number>();
    for (const gw of [ga, gb])
      for (const l of gw.leases) granted.set(l.id, (granted.get(l.id) ?? 0) + l.slots);
    for (const total of granted.values()) expect(total).to.be.at.most(10);
    expect(w.poolkeeper.specializeCalls.length).to.be.at.least(4);
    b.retirer.stop();
  });
});
