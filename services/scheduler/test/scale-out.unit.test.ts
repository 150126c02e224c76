import { expect } from "chai";
import { FizzError, type Lease } from "@fizz/events";
import { slotShare } from "../src/claims";
import { envObj, fnObj, instanceFor } from "./fixtures";
import { leaseReq, report, world } from "./fakes";
import { GatewaySim } from "./gateway-sim";
import { drive, settle } from "@fizz/testkit";

/** Slots granted per instance, over a set of leases. */
function slotsPerInstance(leases: Lease[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const l of leases) m.set(l.instanceId, (m.get(l.instanceId) ?? 0) + l.slots);
  return m;
}

describe("scheduler scale-out policy (unit)", () => {
  let w: ReturnType<typeof world>;
  beforeEach(() => {
    w = world();
    w.registry.set(envObj("node"), fnObj("hello", { concurrency: 50, maxInstances: 100 }));
  });
  afterEach(() => w.retirer.stop());

  describe("one gateway holding N concurrent requests", () => {
    for (const [n, instances] of [
      [200, 4],
      [10, 1],
      [50, 1],
      [51, 2],
    ] as const) {
      it(`${n} requests at concurrency 50 create ${instances} instance(s), each filled before the next`, async () => {
        const gw = new GatewaySim(w.leases, "gateway-a");
        const placed = await Promise.all(Array.from({ length: n }, () => gw.request()));
        expect(w.poolkeeper.specializeCalls).to.have.length(instances);
        expect(new Set(placed).size).to.equal(instances);
        const perInstance = new Map<string, number>();
        for (const id of placed) perInstance.set(id, (perInstance.get(id) ?? 0) + 1);
        expect([...perInstance.values()].filter((c) => c < 50)).to.have.length.at.most(1);
      });
    }
  });

  describe("N concurrent lease requests (one unit of demand each)", () => {
    for (const [n, instances] of [
      [200, 4],
      [10, 1],
    ] as const) {
      it(`${n} lease requests at concurrency 50 create ${instances} instance(s) and grant no instance more than 50 slots`, async () => {
        const results = await Promise.all(
          Array.from({ length: n }, (_, i) =>
            w.leases.lease(leaseReq("hello", { gateway: `gateway-${i}` })),
          ),
        );
        expect(w.poolkeeper.specializeCalls).to.have.length(instances);
        const per = slotsPerInstance(results.map((r) => r.lease));
        expect(per.size).to.equal(instances);
        for (const total of per.values()) expect(total).to.equal(50);
        expect(results.filter((r) => r.outcome === "specialized")).to.have.length(instances);
      });
    }
  });

  it("splits a new instance's slots evenly between the lease requests that waited for it", async () => {
    const results = await Promise.all(
      ["g1", "g2", "g3"].map((g) => w.leases.lease(leaseReq("hello", { gateway: g }))),
    );
    expect(results.map((r) => r.lease.slots)).to.deep.equal([17, 17, 16]);
    expect(slotShare(10, 4, 1)).to.equal(3);
    expect(slotShare(10, 4, 3)).to.equal(2);
    expect(slotShare(5, 5, 5)).to.equal(1);
  });

  it("grants the free slots of an existing instance before specializing a new one", async () => {
    const a = (await w.leases.lease(leaseReq("hello", { gateway: "g1" }))).lease;
    expect(a.slots).to.equal(50);
    // g1 holds all 50 slots until it reports; then only what it has in flight counts.
    report(w, "g1", { [a.instanceId]: 30 });
    const b = await w.leases.lease(leaseReq("hello", { gateway: "g2" }));
    expect(b.outcome).to.equal("existing");
    expect(b.lease).to.include({ instanceId: a.instanceId, slots: 20 });
    expect(w.poolkeeper.specializeCalls).to.have.length(1);
  });

  it("specializes only when every instance of the revision is at capacity, and picks the one with most free slots", async () => {
    const a = (await w.leases.lease(leaseReq("hello", { gateway: "g1" }))).lease.instanceId;
    const b = (await w.leases.lease(leaseReq("hello", { gateway: "g2" }))).lease.instanceId;
    expect(b).to.not.equal(a); // a was fully granted to g1
    report(w, "g1", { [a]: 45 });
    report(w, "g2", { [b]: 20 });
    const c = await w.leases.lease(leaseReq("hello", { gateway: "g3" }));
    expect(c.lease).to.include({ instanceId: b, slots: 30 });
    const d = await w.leases.lease(leaseReq("hello", { gateway: "g4" }));
    expect(d.lease).to.include({ instanceId: a, slots: 5 });
    expect(w.poolkeeper.specializeCalls).to.have.length(2);
    const e = await w.leases.lease(leaseReq("hello", { gateway: "g5" }));
    expect(e.outcome).to.equal("specialized");
    expect(w.poolkeeper.specializeCalls).to.have.length(3);
  });

  it("counts a grant the gateway never used only until PENDING_GRANT_TTL_MS passes", async () => {
    const a = (await w.leases.lease(leaseReq("hello", { gateway: "g1" }))).lease.instanceId;
    await w.clock.advance(5000);
    const b = await w.leases.lease(leaseReq("hello", { gateway: "g2" }));
    expect(b.lease).to.include({ instanceId: a, slots: 50 });
  });

  it("never grants more slots on an instance than its concurrency to gateways asking at once", async () => {
    const gws = ["g1", "g2", "g3", "g4"].map((g) => new GatewaySim(w.leases, g));
    await Promise.all(gws.flatMap((gw) => Array.from({ length: 50 }, () => gw.request())));
    const granted = new Map<string, number>();
    for (const gw of gws)
      for (const l of gw.leases) granted.set(l.id, (granted.get(l.id) ?? 0) + l.slots);
    for (const total of granted.values()) expect(total).to.be.at.most(50);
  });
});

describe("scheduler single flight across replicas (unit, shared claims)", () => {
  it("40 concurrent lease requests spread over two replicas create ceil(40 / 10) = 4 instances", async () => {
    const a = world();
    const b = world({ shared: a.shared });
    a.registry.set(envObj("node"), fnObj("hello", { concurrency: 10 }));
    a.poolkeeper.behave = async (req) => {
      await a.clock.sleep(20);
      return instanceFor(req.function, { concurrency: 10 });
    };
    const results = await drive(
      a.clock,
      Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          (i % 2 ? b : a).leases.lease(leaseReq("hello", { gateway: `gateway-${i}` })),
        ),
      ),
    );
    expect(a.poolkeeper.specializeCalls).to.have.length(4);
    const per = slotsPerInstance(results.map((r) => r.lease));
    expect([...per.values()]).to.deep.equal([10, 10, 10, 10]);
    // Both replicas account every member's share, wherever it asked.
    for (const rep of [a, b])
      for (const id of per.keys()) expect(rep.table.get(id)?.usage.size).to.equal(10);
    a.retirer.stop();
    b.retirer.stop();
  });

  it("a replica that finds another's claim open waits for its instance instead of specializing", async () => {
    const a = world();
    const b = world({ shared: a.shared });
    a.registry.set(envObj("node"), fnObj("hello"));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const base = a.poolkeeper.behave;
    a.poolkeeper.behave = async (req) => {
      await gate;
      return base(req);
    };
    const first = a.leases.lease(leaseReq("hello", { gateway: "g1" }));
    await settle();
    const second = b.leases.lease(leaseReq("hello", { gateway: "g2" }));
    await settle();
    await a.clock.advance(20); // b polls the claim meanwhile
    await settle();
    expect(a.poolkeeper.specializeCalls).to.have.length(1);
    release();
    const [x, y] = await drive(a.clock, Promise.all([first, second]));
    expect(y.lease.instanceId).to.equal(x.lease.instanceId);
    expect(y.outcome).to.equal("joined");
    expect([x.lease.slots, y.lease.slots]).to.deep.equal([25, 25]);
    expect(a.poolkeeper.specializeCalls).to.have.length(1);
    a.retirer.stop();
    b.retirer.stop();
  });

  it("a claim left by a crashed replica expires: waiting leases then specialize", async () => {
    const w = world({ claimTtlMs: 1000 });
    w.registry.set(envObj("node"), fnObj("hello"));
    w.claims.abandon({ namespace: "default", name: "hello", revision: 1 }, "crashed/1", 1000);
    const pending = w.leases.lease(leaseReq("hello"));
    await settle();
    await w.clock.advance(30); // polls the claim, still held
    await settle();
    expect(w.poolkeeper.specializeCalls).to.have.length(0);
    await w.clock.advance(1001);
    const r = await drive(w.clock, pending);
    expect(r.outcome).to.equal("specialized");
    expect(w.poolkeeper.specializeCalls).to.have.length(1);
    w.retirer.stop();
  });

  it("members on another replica get the owner's load failure, and remember it", async () => {
    const a = world();
    const b = world({ shared: a.shared });
    a.registry.set(envObj("node"), fnObj("hello"));
    a.poolkeeper.behave = async () => {
      await a.clock.sleep(20);
      throw new FizzError("FUNCTION_LOAD_FAILED", "hello.js:1: boom");
    };
    const results = await drive(
      a.clock,
      Promise.allSettled([
        a.leases.lease(leaseReq("hello")),
        a.clock.sleep(5).then(() => b.leases.lease(leaseReq("hello"))),
      ]),
    );
    for (const r of results) {
      expect(r.status).to.equal("rejected");
      expect((r as PromiseRejectedResult).reason).to.include({ code: "FUNCTION_LOAD_FAILED" });
    }
    await b.leases.lease(leaseReq("hello")).catch(() => undefined);
    expect(a.poolkeeper.specializeCalls).to.have.length(1);
    a.retirer.stop();
    b.retirer.stop();
  });
});
