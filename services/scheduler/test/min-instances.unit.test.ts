import { expect } from "chai";
import { FizzError } from "@fizz/events";
import { settle } from "@fizz/testkit";
import { onInstanceEvent, onRegistryChanged } from "../src/handlers";
import { rebuildFromRedis } from "../src/reconcile";
import { envObj, fnObj, type FnOpts } from "./fixtures";
import { leaseReq, world } from "./fakes";

function changed(op: "created" | "updated", obj: ReturnType<typeof fnObj>) {
  const { namespace, name, revision } = obj.metadata;
  return { kind: "functions" as const, op, namespace, name, revision, object: obj };
}

function live(w: ReturnType<typeof world>, revision = 1): string[] {
  return w.table.live("default", "hello", revision).map((t) => t.id);
}

describe("scheduler minInstances (unit)", () => {
  let w: ReturnType<typeof world>;
  const create = (o: FnOpts) => {
    const f = fnObj("hello", o);
    w.registry.set(f);
    onRegistryChanged(w.model, changed(o.revision && o.revision > 1 ? "updated" : "created", f));
  };
  beforeEach(() => {
    w = world({ drainMs: 20 });
    w.registry.set(envObj("node"));
    w.minInstances.enable();
  });
  afterEach(async () => {
    w.minInstances.disable();
    await w.minInstances.idle();
    w.retirer.stop();
  });

  it("specializes minInstances instances as soon as the function is created, before any request", async () => {
    create({ minInstances: 2 });
    await w.minInstances.idle();
    expect(w.poolkeeper.specializeCalls).to.have.length(2);
    expect(live(w)).to.have.length(2);
    expect(w.routes.routes.size).to.equal(2);
    // The first request finds them: no specialization of its own.
    const r = await w.leases.lease(leaseReq("hello"));
    expect(r.outcome).to.equal("existing");
    expect(w.poolkeeper.specializeCalls).to.have.length(2);
  });

  it("replaces an instance that died", async () => {
    create({ minInstances: 1 });
    await w.minInstances.idle();
    const [id] = live(w);
    onInstanceEvent(w.model, { event: "died", instance: w.table.get(id!)!.instance });
    await w.minInstances.idle();
    expect(w.poolkeeper.specializeCalls).to.have.length(2);
    expect(live(w)).to.have.length(1).and.not.include(id);
  });

  it("keeps minInstances of the new revision after an update, while the old ones drain", async () => {
    create({ minInstances: 2 });
    await w.minInstances.idle();
    create({ minInstances: 2, revision: 2 });
    await w.minInstances.idle();
    expect(w.poolkeeper.specializeCalls.map((c) => c.function.revision)).to.deep.equal([
      1, 1, 2, 2,
    ]);
    expect(live(w, 2)).to.have.length(2);
    await w.clock.advance(20); // the drain period
    await w.retirer.idle();
    expect(w.poolkeeper.retired).to.have.length(2);
  });

  it("tops up after a restart only once the route cache is rebuilt, counting what it holds", async () => {
    create({ minInstances: 2 });
    await w.minInstances.idle();
    const fresh = world({ shared: { ...w.shared, replicas: [] } });
    fresh.loadCatalog();
    await rebuildFromRedis({ table: fresh.table, routes: fresh.routes, now: fresh.model.now });
    fresh.minInstances.enable();
    await fresh.minInstances.idle();
    expect(w.poolkeeper.specializeCalls).to.have.length(2);
    // One of the two died while nobody watched: the reaper's tick notices.
    w.poolkeeper.instances.pop();
    const gone = [...fresh.table.all()].find(
      (t) => !w.poolkeeper.instances.some((i) => i.id === t.id),
    )!;
    onInstanceEvent(fresh.model, { event: "died", instance: gone.instance });
    fresh.reaper.tick();
    await fresh.minInstances.idle();
    expect(w.poolkeeper.specializeCalls).to.have.length(3);
    fresh.minInstances.disable();
    fresh.retirer.stop();
  });

  it("never goes past maxInstances", async () => {
    create({ minInstances: 5, maxInstances: 2 });
    await w.minInstances.idle();
    expect(w.poolkeeper.specializeCalls).to.have.length(2);
  });

  it("two replicas seeing the same change create minInstances once, not once each", async () => {
    const other = world({ shared: w.shared });
    other.minInstances.enable();
    const f = fnObj("hello", { minInstances: 3 });
    w.registry.set(f);
    onRegistryChanged(w.model, changed("created", f));
    onRegistryChanged(other.model, changed("created", f));
    await Promise.all([w.minInstances.idle(), other.minInstances.idle()]);
    expect(w.poolkeeper.specializeCalls).to.have.length(3);
    expect(live(other)).to.have.length(3); // learned from the specialized events
    other.minInstances.disable();
    other.retirer.stop();
  });

  it("a lease arriving during a top-up joins the instance being specialized", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const base = w.poolkeeper.behave;
    w.poolkeeper.behave = async (req) => {
      await gate;
      return base(req);
    };
    create({ minInstances: 1 });
    await settle();
    const pending = w.leases.lease(leaseReq("hello"));
    await settle();
    release();
    const r = await pending;
    expect(r.outcome).to.equal("joined");
    expect(r.lease.slots).to.equal(50);
    expect(w.poolkeeper.specializeCalls).to.have.length(1);
  });

  it("backs off after a failed top-up instead of retrying on every tick", async () => {
    w.poolkeeper.behave = () =>
      Promise.reject(new FizzError("NO_CAPACITY", "warm pool for default/node is empty"));
    create({ minInstances: 1 });
    await w.minInstances.idle();
    w.reaper.tick();
    await w.minInstances.idle();
    expect(w.poolkeeper.specializeCalls).to.have.length(1);
    await w.clock.advance(5001);
    w.reaper.tick();
    await w.minInstances.idle();
    expect(w.poolkeeper.specializeCalls).to.have.length(2);
  });

  it("does nothing before it is enabled (the route cache not rebuilt yet)", async () => {
    w.minInstances.disable();
    create({ minInstances: 2 });
    w.reaper.tick();
    await w.minInstances.idle();
    expect(w.poolkeeper.specializeCalls).to.have.length(0);
  });
});
