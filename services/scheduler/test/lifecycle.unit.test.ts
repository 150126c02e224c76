import { expect } from "chai";
import { onInstanceEvent, onRegistryChanged, onUsageReport } from "../src/handlers";
import { rebuildFromRedis, reconcileWithPoolkeeper } from "../src/reconcile";
import { envObj, fnObj, instanceFor } from "./fixtures";
import { leaseReq, world } from "./fakes";

function changed(op: "created" | "updated" | "deleted", obj: ReturnType<typeof fnObj>) {
  return {
    kind: "functions" as const,
    op,
    namespace: obj.metadata.namespace,
    name: obj.metadata.name,
    revision: obj.metadata.revision,
    object: obj,
  };
}

describe("scheduler instance lifecycle (unit)", () => {
  let w: ReturnType<typeof world>;
  beforeEach(() => {
    w = world({ drainMs: 40 });
    w.registry.set(envObj("node"), fnObj("hello"));
    w.loadCatalog();
  });
  afterEach(() => w.retirer.stop());

  it("drains old-revision instances on a new revision: gateways told at once, retired after the drain period", async () => {
    const old = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
    onRegistryChanged(w.model, changed("updated", fnObj("hello", { revision: 2 })));
    expect(w.publisher.events).to.deep.equal([
      { namespace: "default", name: "hello", revision: 2, removed: [old] },
    ]);
    expect(w.table.get(old)?.draining).to.equal(true);
    expect(w.poolkeeper.retired).to.deep.equal([]);
    // Not handed out while draining: the next lease specializes revision 2.
    const next = await w.leases.lease(leaseReq("hello"));
    expect(next.lease.function.revision).to.equal(2);
    await w.clock.advance(40); // the drain period
    await w.retirer.idle();
    expect(w.poolkeeper.retired).to.include(old);
    expect(w.routes.routes.has(old)).to.equal(false);
  });

  it("retires a draining instance as soon as every gateway using it reports nothing in flight", async () => {
    w = world({ drainMs: 60_000 });
    w.registry.set(envObj("node"), fnObj("hello"));
    const id = (await w.leases.lease(leaseReq("hello", { gateway: "g1" }))).lease.instanceId;
    onUsageReport(w.model, {
      gateway: "g1",
      items: [
        {
          instanceId: id,
          namespace: "default",
          function: "hello",
          inFlight: 2,
          served: 5,
          lastUsedAt: w.clock.t,
        },
      ],
    });
    onRegistryChanged(w.model, changed("updated", fnObj("hello", { revision: 2 })));
    await w.clock.advance(100);
    onUsageReport(w.model, {
      gateway: "g1",
      items: [
        {
          instanceId: id,
          namespace: "default",
          function: "hello",
          inFlight: 1,
          served: 6,
          lastUsedAt: w.clock.t,
        },
      ],
    });
    expect(w.table.get(id)).to.not.equal(undefined);
    onUsageReport(w.model, {
      gateway: "g1",
      items: [
        {
          instanceId: id,
          namespace: "default",
          function: "hello",
          inFlight: 0,
          served: 7,
          lastUsedAt: w.clock.t,
        },
      ],
    });
    expect(w.table.get(id)).to.equal(undefined);
    await w.retirer.idle();
    expect(w.poolkeeper.retired).to.deep.equal([id]);
  });

  it("drains every instance of a deleted function", async () => {
    const a = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
    const b = (await w.leases.lease(leaseReq("hello", { exclude: [a] }))).lease.instanceId;
    onRegistryChanged(w.model, changed("deleted", fnObj("hello")));
    expect(w.publisher.removedIds().sort()).to.deep.equal([a, b].sort());
    expect(w.catalog.fn("default", "hello")).to.equal(undefined);
    await w.clock.advance(40); // the drain period
    await w.retirer.idle();
    expect(w.poolkeeper.retired).to.have.length(2);
  });

  it("ignores a function event older than the cached revision", async () => {
    onRegistryChanged(w.model, changed("updated", fnObj("hello", { revision: 3 })));
    const id = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
    onRegistryChanged(w.model, changed("updated", fnObj("hello", { revision: 2 })));
    expect(w.catalog.fn("default", "hello")?.metadata.revision).to.equal(3);
    expect(w.table.get(id)?.draining).to.equal(false);
  });

  it("drops a dead instance everywhere and tells gateways", async () => {
    const id = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
    const inst = w.table.get(id)!.instance;
    onInstanceEvent(w.model, { event: "died", instance: inst, reason: "exit code 1" });
    expect(w.table.get(id)).to.equal(undefined);
    expect(w.publisher.events).to.deep.equal([
      { namespace: "default", name: "hello", revision: 1, removed: [id] },
    ]);
    await w.retirer.idle();
    expect(w.routes.routes.has(id)).to.equal(false);
    expect(w.poolkeeper.retired).to.deep.equal([]); // already dead: nothing to retire
  });

  it("adopts an instance another replica specialized for the current revision, but not an old one", () => {
    const current = instanceFor({ namespace: "default", name: "hello", revision: 1 });
    const old = instanceFor({ namespace: "default", name: "hello", revision: 1 });
    onRegistryChanged(w.model, changed("updated", fnObj("hello", { revision: 2 })));
    onInstanceEvent(w.model, {
      event: "specialized",
      instance: { ...current, function: { namespace: "default", name: "hello", revision: 2 } },
    });
    onInstanceEvent(w.model, { event: "specialized", instance: old });
    expect(w.table.get(current.id)).to.not.equal(undefined);
    expect(w.table.get(old.id)).to.equal(undefined);
  });

  describe("reaper", () => {
    it("drains instances idle past idleTimeout, most idle first, keeping minInstances", async () => {
      w.registry.set(fnObj("hello", { idleTimeoutSeconds: 10, minInstances: 1 }));
      w.loadCatalog();
      const a = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
      await w.clock.advance(1000);
      const b = (await w.leases.lease(leaseReq("hello", { exclude: [a] }))).lease.instanceId;
      await w.clock.advance(9500); // a idle 10.5 s, b idle 9.5 s
      w.reaper.tick();
      expect(w.publisher.removedIds()).to.deep.equal([a]);
      await w.clock.advance(1000); // b idle too, but it is the last one: minInstances keeps it
      w.reaper.tick();
      expect(w.publisher.removedIds()).to.deep.equal([a]);
      await w.retirer.idle(); // a's drain period ended during the last second
      expect(w.poolkeeper.retired).to.include(a);
      expect(w.table.get(b)?.draining).to.equal(false);
    });

    it("keeps an instance that a gateway reports in use", async () => {
      w.registry.set(fnObj("hello", { idleTimeoutSeconds: 10 }));
      w.loadCatalog();
      const id = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
      await w.clock.advance(9000);
      onUsageReport(w.model, {
        gateway: "gateway-a",
        items: [
          {
            instanceId: id,
            namespace: "default",
            function: "hello",
            inFlight: 0,
            served: 1,
            lastUsedAt: w.clock.t,
          },
        ],
      });
      await w.clock.advance(9000);
      w.reaper.tick();
      expect(w.publisher.events).to.deep.equal([]);
      await w.clock.advance(1001);
      w.reaper.tick();
      expect(w.publisher.removedIds()).to.deep.equal([id]);
    });

    it("drains instances of functions that no longer exist once the catalog is loaded", () => {
      const stray = instanceFor({ namespace: "default", name: "gone", revision: 4 });
      w.table.add(stray, w.clock.t);
      w.reaper.tick();
      expect(w.publisher.events).to.deep.equal([
        { namespace: "default", name: "gone", revision: 4, removed: [stray.id] },
      ]);
    });
  });

  describe("restart", () => {
    it("rebuilds from the route store, drops what the poolkeeper no longer has and adopts what it has", async () => {
      const kept = (await w.leases.lease(leaseReq("hello"))).lease.instanceId;
      const lost = (await w.leases.lease(leaseReq("hello", { exclude: [kept] }))).lease.instanceId;
      w.poolkeeper.instances = w.poolkeeper.instances.filter((i) => i.id !== lost);
      const orphan = instanceFor({ namespace: "default", name: "hello", revision: 1 });
      w.poolkeeper.instances.push(orphan);

      // A new scheduler process: same Redis (route store) and poolkeeper, empty memory.
      const fresh = world();
      const { routes, poolkeeper } = w;
      fresh.registry.set(envObj("node"), fnObj("hello"));
      expect(await rebuildFromRedis({ table: fresh.table, routes, now: fresh.model.now })).to.equal(
        2,
      );
      await fresh.clock.advance(1);
      const res = await reconcileWithPoolkeeper({
        ...fresh,
        now: fresh.model.now,
        routes,
        poolkeeper,
      });
      expect(res).to.deep.equal({ dropped: 1, adopted: 1 });
      expect([...fresh.table.all()].map((t) => t.id).sort()).to.deep.equal(
        [kept, orphan.id].sort(),
      );
      expect(routes.routes.has(orphan.id)).to.equal(true);
      expect(fresh.publisher.removedIds()).to.deep.equal([lost]);
      fresh.retirer.stop();
    });
  });
});
