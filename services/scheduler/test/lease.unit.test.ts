import { expect } from "chai";
import { FizzError } from "@fizz/events";
import { effectiveConcurrency } from "../src/catalog";
import { onInstanceEvent, onRegistryChanged, onUsageReport } from "../src/handlers";
import { reconcileWithPoolkeeper } from "../src/reconcile";
import { envObj, fnObj, instanceFor } from "./fixtures";
import { leaseReq, report, world } from "./fakes";
import { settle } from "@fizz/testkit";

async function rejection(p: Promise<unknown>): Promise<FizzError> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(FizzError);
    return err as FizzError;
  }
  throw new Error("expected a rejection");
}

describe("scheduler lease (unit)", () => {
  let w: ReturnType<typeof world>;
  beforeEach(() => {
    w = world();
    w.registry.set(envObj("node"), envObj("py", { image: "fizz/env-python" }), fnObj("hello"));
  });
  afterEach(() => w.retirer.stop());

  it("shares one specialization among 50 concurrent leases for a new function", async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, () => w.leases.lease(leaseReq("hello"))),
    );
    expect(w.poolkeeper.specializeCalls).to.have.length(1);
    expect(new Set(results.map((r) => r.lease.instanceId)).size).to.equal(1);
    expect(results.filter((r) => r.outcome === "specialized")).to.have.length(1);
    expect(results.filter((r) => r.outcome === "joined")).to.have.length(49);
    expect(w.routes.puts).to.equal(1);
  });

  it("sends the function's code, entrypoint, environment and effective concurrency to specialize", async () => {
    w.registry.set(fnObj("hello", { entrypoint: "handler", concurrency: 7 }));
    const { lease } = await w.leases.lease(leaseReq("hello"));
    const call = w.poolkeeper.specializeCalls[0]!;
    expect(call.environment).to.deep.equal({ namespace: "default", name: "node" });
    expect(call.function).to.deep.equal({ namespace: "default", name: "hello", revision: 1 });
    expect(call.code?.digest).to.match(/^sha256:/);
    expect(call.entrypoint).to.equal("handler");
    expect(call.concurrency).to.equal(7);
    expect(lease).to.include({ slots: 7, concurrency: 7, timeoutMs: 60_000 });
    expect(lease.function).to.deep.equal({ namespace: "default", name: "hello", revision: 1 });
  });

  it("answers a lease from memory when an instance has free slots: no poolkeeper, registry, route store or claim call", async () => {
    const first = await w.leases.lease(leaseReq("hello"));
    // gateway-a holds the 50 slots it was granted until it reports using only 10 of them.
    report(w, "gateway-a", { [first.lease.instanceId]: 10 });
    const gets = w.registry.gets;
    const joins = w.claims.joins;
    const r = await w.leases.lease(leaseReq("hello", { gateway: "gateway-b" }));
    expect(r.outcome).to.equal("existing");
    expect(r.lease).to.include({ instanceId: first.lease.instanceId, slots: 40, concurrency: 50 });
    expect(w.poolkeeper.specializeCalls).to.have.length(1);
    expect(w.registry.gets).to.equal(gets);
    expect(w.claims.joins).to.equal(joins);
    expect(w.routes.puts).to.equal(1);
  });

  it("starts a second specialization when the gateway excludes every current instance", async () => {
    const first = await w.leases.lease(leaseReq("hello"));
    const burst = await Promise.all(
      Array.from({ length: 10 }, () =>
        w.leases.lease(leaseReq("hello", { exclude: [first.lease.instanceId] })),
      ),
    );
    expect(w.poolkeeper.specializeCalls).to.have.length(2);
    const second = new Set(burst.map((r) => r.lease.instanceId));
    expect(second.size).to.equal(1);
    expect(second.has(first.lease.instanceId)).to.equal(false);
  });

  it("answers NO_CAPACITY at maxInstances when every instance is excluded, without specializing", async () => {
    w.registry.set(fnObj("hello", { maxInstances: 1 }));
    const first = await w.leases.lease(leaseReq("hello"));
    const err = await rejection(
      w.leases.lease(leaseReq("hello", { exclude: [first.lease.instanceId] })),
    );
    expect(err.code).to.equal("NO_CAPACITY");
    expect(err.retryable).to.equal(true);
    expect(err.status).to.equal(503);
    expect(w.poolkeeper.specializeCalls).to.have.length(1);
  });

  it("prefers the least loaded instance by granted slots and reported in-flight requests", async () => {
    const a = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
    const b = (await w.leases.lease(leaseReq("hello", { exclude: [a] }))).lease.instanceId;
    // a was granted to gateway-a and b to gateway-a as well; gateway-a reports a busy, b idle.
    onUsageReport(w.model, {
      gateway: "gateway-a",
      items: [
        {
          instanceId: a,
          namespace: "default",
          function: "hello",
          inFlight: 9,
          served: 20,
          lastUsedAt: w.clock.t,
        },
        {
          instanceId: b,
          namespace: "default",
          function: "hello",
          inFlight: 1,
          served: 3,
          lastUsedAt: w.clock.t,
        },
      ],
    });
    expect(
      (await w.leases.lease(leaseReq("hello", { gateway: "gateway-b" }))).lease.instanceId,
    ).to.equal(b);
    // The grant just made counts on b until gateway-b reports, so the next one goes to a.
    expect(
      (await w.leases.lease(leaseReq("hello", { gateway: "gateway-c" }))).lease.instanceId,
    ).to.equal(a);
  });

  it("resolves concurrency from the function, then the environment, then the runtime's default", () => {
    expect(
      effectiveConcurrency(fnObj("f", { concurrency: 7 }), envObj("e", { concurrency: 3 })),
    ).to.equal(7);
    expect(effectiveConcurrency(fnObj("f"), envObj("e", { concurrency: 3 }))).to.equal(3);
    expect(
      effectiveConcurrency(fnObj("f"), envObj("e", { image: "ghcr.io/x/env-node:1" })),
    ).to.equal(50);
    expect(effectiveConcurrency(fnObj("f"), envObj("e", { image: "fizz/env-python" }))).to.equal(
      10,
    );
    expect(effectiveConcurrency(fnObj("f"), envObj("e", { image: "acme/custom" }))).to.equal(10);
  });

  it("returns FUNCTION_LOAD_FAILED with the loader's message and answers it from memory until the TTL passes", async () => {
    w.poolkeeper.behave = () =>
      Promise.reject(
        new FizzError("FUNCTION_LOAD_FAILED", "hello.js:2: SyntaxError: Unexpected token"),
      );
    const errs = await Promise.all(
      Array.from({ length: 5 }, () => rejection(w.leases.lease(leaseReq("hello")))),
    );
    expect(errs.map((e) => e.code)).to.deep.equal(Array(5).fill("FUNCTION_LOAD_FAILED"));
    expect(errs[0]!.message).to.equal("hello.js:2: SyntaxError: Unexpected token");
    expect(w.poolkeeper.specializeCalls).to.have.length(1);

    await w.clock.advance(4000);
    expect((await rejection(w.leases.lease(leaseReq("hello")))).message).to.contain("hello.js:2");
    expect(w.poolkeeper.specializeCalls).to.have.length(1);

    await w.clock.advance(1001);
    await rejection(w.leases.lease(leaseReq("hello")));
    expect(w.poolkeeper.specializeCalls).to.have.length(2);
  });

  it("forgets a load failure when the function gets a new revision", async () => {
    w.poolkeeper.behave = () =>
      Promise.reject(new FizzError("FUNCTION_LOAD_FAILED", "hello.js:1: boom"));
    await rejection(w.leases.lease(leaseReq("hello")));
    const fixed = fnObj("hello", { revision: 2 });
    w.registry.set(fixed);
    onRegistryChanged(w.model, {
      kind: "functions",
      op: "updated",
      namespace: "default",
      name: "hello",
      revision: 2,
      object: fixed,
    });
    w.poolkeeper.behave = (req) => Promise.resolve(instanceFor(req.function));
    const { lease } = await w.leases.lease(leaseReq("hello"));
    expect(lease.function.revision).to.equal(2);
  });

  it("passes other specialize errors through unchanged and does not remember them", async () => {
    w.poolkeeper.behave = () =>
      Promise.reject(new FizzError("NO_CAPACITY", "warm pool for default/node is empty"));
    expect((await rejection(w.leases.lease(leaseReq("hello")))).code).to.equal("NO_CAPACITY");
    await rejection(w.leases.lease(leaseReq("hello")));
    expect(w.poolkeeper.specializeCalls).to.have.length(2);
  });

  it("retires instances a gateway reports as failed, tells gateways, and leases another", async () => {
    const bad = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
    const r = await w.leases.lease(leaseReq("hello", { failed: [bad] }));
    expect(r.lease.instanceId).to.not.equal(bad);
    expect(w.table.get(bad)).to.equal(undefined);
    expect(w.publisher.removedIds()).to.deep.equal([bad]);
    await w.retirer.idle();
    expect(w.poolkeeper.retired).to.deep.equal([bad]);
    expect(w.routes.routes.has(bad)).to.equal(false);
  });

  it("ignores failed ids that belong to another function", async () => {
    w.registry.set(fnObj("other"));
    const other = (await w.leases.lease(leaseReq("other"))).lease.instanceId;
    await w.leases.lease(leaseReq("hello", { failed: [other] }));
    expect(w.table.get(other)).to.not.equal(undefined);
  });

  it("answers NOT_FOUND for a function the registry does not have", async () => {
    const err = await rejection(w.leases.lease(leaseReq("missing")));
    expect(err.code).to.equal("NOT_FOUND");
    expect(w.poolkeeper.specializeCalls).to.have.length(0);
  });

  it("retires an instance whose revision was superseded during specialization and specializes the new one", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    w.poolkeeper.behave = async (req) => {
      if (req.function.revision === 1) await gate;
      return instanceFor(req.function);
    };
    const pending = w.leases.lease(leaseReq("hello"));
    await settle();
    const v2 = fnObj("hello", { revision: 2 });
    onRegistryChanged(w.model, {
      kind: "functions",
      op: "updated",
      namespace: "default",
      name: "hello",
      revision: 2,
      object: v2,
    });
    release();
    const { lease } = await pending;
    expect(lease.function.revision).to.equal(2);
    expect(w.poolkeeper.specializeCalls.map((c) => c.function.revision)).to.deep.equal([1, 2]);
    await w.retirer.idle();
    expect(w.poolkeeper.retired).to.have.length(1);
  });
  describe("minRevision (the gateway saw an update this replica has not)", () => {
    it("refreshes the function from the registry, drains the old revision and leases the new one", async () => {
      const old = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
      w.registry.set(fnObj("hello", { revision: 2 })); // the change event has not arrived here
      const gets = w.registry.gets;
      const { lease } = await w.leases.lease(leaseReq("hello", { minRevision: 2 }));
      expect(lease.function.revision).to.equal(2);
      expect(lease.instanceId).to.not.equal(old);
      expect(w.registry.gets).to.equal(gets + 1);
      expect(w.table.get(old)?.draining).to.equal(true);
      expect(w.publisher.events).to.deep.include({
        namespace: "default",
        name: "hello",
        revision: 2,
        removed: [old],
      });
    });

    it("asks the registry once for many concurrent leases naming the newer revision", async () => {
      await w.leases.lease(leaseReq("hello"));
      w.registry.set(fnObj("hello", { revision: 2 }));
      const gets = w.registry.gets;
      const results = await Promise.all(
        Array.from({ length: 20 }, () => w.leases.lease(leaseReq("hello", { minRevision: 2 }))),
      );
      expect(w.registry.gets).to.equal(gets + 1);
      expect(results.every((r) => r.lease.function.revision === 2)).to.equal(true);
    });

    it("answers UNAVAILABLE, and never an old-revision lease, while the registry is behind", async () => {
      await w.leases.lease(leaseReq("hello"));
      const err = await rejection(w.leases.lease(leaseReq("hello", { minRevision: 3 })));
      expect(err.code).to.equal("UNAVAILABLE");
      expect(err.retryable).to.equal(true);
      expect(err.message).to.contain("revision 3");
    });

    it("answers from memory when the catalog is as new as minRevision", async () => {
      await w.leases.lease(leaseReq("hello"));
      const gets = w.registry.gets;
      await w.leases.lease(leaseReq("hello", { minRevision: 1, gateway: "gateway-b" }));
      expect(w.registry.gets).to.equal(gets);
    });
  });

  describe("instances a gateway reported failed (hung function, 504)", () => {
    it("are killed at the poolkeeper and replaced by the next lease", async () => {
      const hung = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
      const next = await w.leases.lease(leaseReq("hello", { failed: [hung] }));
      expect(next.outcome).to.equal("specialized");
      expect(next.lease.instanceId).to.not.equal(hung);
      await w.retirer.idle();
      expect(w.poolkeeper.retired).to.deep.equal([hung]);
    });

    it("are never leased again, though the poolkeeper announces or still lists them", async () => {
      const hung = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
      const inst = w.table.get(hung)!.instance;
      // The kill did not take: the poolkeeper keeps the instance.
      w.poolkeeper.retire = (id) => {
        w.poolkeeper.retired.push(id);
        return Promise.resolve(true);
      };
      await w.leases.lease(leaseReq("hello", { failed: [hung] }));
      onInstanceEvent(w.model, { event: "specialized", instance: inst });
      await w.clock.advance(120_000); // past every tombstone
      const res = await reconcileWithPoolkeeper({ ...w, now: w.model.now });
      expect(res.adopted).to.equal(0);
      await w.retirer.idle();
      expect(w.poolkeeper.retired).to.deep.equal([hung, hung]); // retired again, not adopted
      for (let i = 0; i < 5; i++) {
        const r = await w.leases.lease(leaseReq("hello", { gateway: `gateway-${i}` }));
        expect(r.lease.instanceId).to.not.equal(hung);
      }
    });

    it("reported to a replica that never knew them: that replica tells the others, and retires them once the poolkeeper lists them for this function", async () => {
      const hung = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
      const other = world({ shared: w.shared }); // started after the specialized event went by
      other.loadCatalog();
      await other.leases.lease(leaseReq("hello", { failed: [hung], gateway: "gateway-b" }));
      expect(w.table.get(hung)).to.equal(undefined); // told over scheduler.instances
      expect(w.poolkeeper.retired).to.deep.equal([]); // not on the gateway's word alone
      await reconcileWithPoolkeeper({ ...other, now: other.model.now });
      await other.retirer.idle();
      expect(w.poolkeeper.retired).to.deep.equal([hung]);
      other.retirer.stop();
    });

    it("are dropped by the other scheduler replicas too", async () => {
      const other = world({ shared: w.shared });
      other.loadCatalog();
      const hung = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
      expect(other.table.get(hung)).to.not.equal(undefined); // learned from the specialized event
      await w.leases.lease(leaseReq("hello", { failed: [hung] }));
      expect(other.table.get(hung)).to.equal(undefined);
      const r = await other.leases.lease(leaseReq("hello", { gateway: "gateway-b" }));
      expect(r.lease.instanceId).to.not.equal(hung);
      other.retirer.stop();
    });
  });
});
