import { expect } from "chai";
import type { Environment, FunctionObject, RegistryChanged } from "@fizz/events";
import { Catalog } from "../src/catalog";
import { catalogListing, onRegistryChanged } from "../src/handlers";
import { FakeRegistry, leaseReq, world } from "./fakes";
import { envObj, fnObj } from "./fixtures";

function changed(op: "created" | "updated" | "deleted", obj: FunctionObject | Environment) {
  const { namespace, name, revision } = obj.metadata;
  const kind = obj.kind === "Function" ? ("functions" as const) : ("environments" as const);
  return { kind, op, namespace, name, revision, object: obj } as RegistryChanged;
}

describe("scheduler catalog listings (unit)", () => {
  it("counts as loaded only once both functions and environments were listed", () => {
    const catalog = new Catalog(new FakeRegistry());
    expect(catalog.listed("functions", [fnObj("hello")]).loaded).to.equal(false);
    expect(catalog.loaded).to.equal(false);
    expect(catalog.listed("environments", [envObj("node")]).loaded).to.equal(true);
    expect(catalog.resolveCached("default", "hello")?.env.metadata.name).to.equal("node");
  });

  it("keeps a newer revision an event brought over an older listing", () => {
    const catalog = new Catalog(new FakeRegistry());
    catalog.putFunction(fnObj("hello", { revision: 3 }));
    catalog.listed("functions", [fnObj("hello", { revision: 2 })]);
    expect(catalog.fn("default", "hello")?.metadata.revision).to.equal(3);
  });

  it("keeps only objects of the listed kind", () => {
    const catalog = new Catalog(new FakeRegistry());
    catalog.listed("functions", [envObj("node")] as never);
    expect(catalog.env("default", "node")).to.equal(undefined);
  });
});

/**
 * A relist (after a NATS reconnect) crossing change events, driven through the hooks index.ts
 * hands to kit's followRegistryListing (onAttempt when registry.list is sent, onList with its
 * answer, onFailure), with minInstances topped up after each listing as index.ts does.
 */
describe("scheduler catalog relist races (unit)", () => {
  let w: ReturnType<typeof world>;
  const relist = (kind: "functions" | "environments") =>
    catalogListing(w.model, kind, () => w.minInstances.checkAll());
  /** The registry changes and this replica sees the event. */
  const event = (op: "created" | "updated" | "deleted", obj: FunctionObject | Environment) => {
    const key = `${obj.kind}/${obj.metadata.namespace}/${obj.metadata.name}`;
    if (op === "deleted") w.registry.objects.delete(key);
    else w.registry.set(obj);
    onRegistryChanged(w.model, changed(op, obj));
  };
  const specializedFor = (name: string) =>
    w.poolkeeper.specializeCalls.filter((c) => c.function.name === name);
  /** The top-ups after the listing, and later ones: past the drain period and the finished claim. */
  const topUps = async () => {
    await w.minInstances.idle();
    await w.clock.advance(6000);
    await w.retirer.idle();
    w.reaper.tick();
    await w.minInstances.idle();
  };

  beforeEach(async () => {
    w = world({ drainMs: 40 });
    w.registry.set(envObj("node"), fnObj("hello", { revision: 3, uid: "old", minInstances: 1 }));
    w.minInstances.enable();
    w.loadCatalog();
    await w.minInstances.idle();
    expect(specializedFor("hello")).to.have.length(1);
  });
  afterEach(async () => {
    w.minInstances.disable();
    await w.minInstances.idle();
    w.retirer.stop();
  });

  it("does not bring back a function whose delete event arrived while the listing was in flight", async () => {
    const listing = relist("functions");
    listing.onAttempt();
    const answer = w.registry.list("functions"); // the registry answers before the delete
    event("deleted", fnObj("hello", { revision: 3, uid: "old", minInstances: 1 }));
    listing.onList(answer);
    expect(w.catalog.fn("default", "hello")).to.equal(undefined);
    await topUps();
    expect(specializedFor("hello"), "no instance for the deleted function").to.have.length(1);
  });

  it("keeps the new incarnation when the function is deleted and created again while the listing is in flight", async () => {
    const listing = relist("functions");
    listing.onAttempt();
    const answer = w.registry.list("functions");
    event("deleted", fnObj("hello", { revision: 3, uid: "old", minInstances: 1 }));
    event("created", fnObj("hello", { revision: 1, uid: "new", minInstances: 1 }));
    listing.onList(answer);
    expect(w.catalog.fn("default", "hello")?.metadata.uid).to.equal("new");
    const r = await w.leases.lease(leaseReq("hello"));
    expect(r.lease.function.revision).to.equal(1);
    await topUps();
    // Since the first (old) instance, only the new incarnation's revision was specialized.
    const since = specializedFor("hello").slice(1);
    expect(since.map((c) => c.function.revision)).to.deep.equal(since.map(() => 1));
    expect(w.table.live("default", "hello", 3)).to.deep.equal([]);
  });

  it("removes a function deleted while events were lost, drains its instances and tops nothing up for it", async () => {
    const [inst] = w.table.live("default", "hello", 3);
    w.registry.objects.delete("Function/default/hello"); // deleted while disconnected: no event
    const listing = relist("functions");
    listing.onAttempt();
    listing.onList(w.registry.list("functions"));
    expect(w.catalog.fn("default", "hello")).to.equal(undefined);
    expect(w.publisher.removedIds()).to.deep.equal([inst!.id]);
    await topUps();
    expect(w.poolkeeper.retired).to.deep.equal([inst!.id]);
    expect(specializedFor("hello"), "no instance for the deleted function").to.have.length(1);
  });

  it("drains every instance of a function deleted and created again while events were lost, and leases none of them for the new incarnation", async () => {
    // The old incarnation at revision 1, the one a new incarnation starts at.
    event("created", fnObj("solo", { revision: 1, uid: "old", minInstances: 1 }));
    await w.minInstances.idle();
    const [old] = w.table.live("default", "solo", 1);
    expect(old, "the old incarnation's instance").to.not.equal(undefined);
    // Deleted and created again while disconnected: no events.
    w.registry.set(fnObj("solo", { revision: 1, uid: "new", minInstances: 1 }));
    const listing = relist("functions");
    listing.onAttempt();
    listing.onList(w.registry.list("functions"));
    expect(w.catalog.fn("default", "solo")?.metadata.uid).to.equal("new");
    expect(w.publisher.removedIds()).to.deep.equal([old!.id]);
    expect(w.table.live("default", "solo", 1)).to.deep.equal([]);
    const r = await w.leases.lease(leaseReq("solo"));
    expect(r.lease.instanceId, "not the old incarnation's instance").to.not.equal(old!.id);
    expect(r.lease.function.revision).to.equal(1);
    await topUps();
    expect(w.poolkeeper.retired).to.include(old!.id);
    expect(w.table.get(old!.id)).to.equal(undefined);
  });

  it("drains the older revisions of a function updated while events were lost, and tops up the new one", async () => {
    const [inst] = w.table.live("default", "hello", 3);
    // Updated while disconnected: no event.
    w.registry.set(fnObj("hello", { revision: 4, uid: "old", minInstances: 1 }));
    const listing = relist("functions");
    listing.onAttempt();
    listing.onList(w.registry.list("functions"));
    expect(w.catalog.fn("default", "hello")?.metadata.revision).to.equal(4);
    expect(w.publisher.removedIds()).to.deep.equal([inst!.id]);
    await topUps();
    expect(w.poolkeeper.retired).to.deep.equal([inst!.id]);
    expect(specializedFor("hello").map((c) => c.function.revision)).to.deep.equal([3, 4]);
    expect(w.table.live("default", "hello", 4)).to.have.length(1);
  });

  it("drains nothing for a listing that holds what is cached", async () => {
    const listing = relist("functions");
    listing.onAttempt();
    listing.onList(w.registry.list("functions"));
    await topUps();
    expect(w.publisher.removedIds()).to.deep.equal([]);
    expect(w.table.live("default", "hello", 3)).to.have.length(1);
  });

  it("keeps a function the registry left out of the listing because it cannot read it, and its instances", () => {
    const [inst] = w.table.live("default", "hello", 3);
    const listing = relist("functions");
    listing.onAttempt();
    const answer = w.registry.list("functions").filter((f) => f.metadata.name !== "hello");
    listing.onList(answer, { skipped: [{ namespace: "default", name: "hello" }] });
    expect(w.catalog.fn("default", "hello")?.metadata.uid).to.equal("old");
    expect(w.publisher.removedIds(), "not drained").to.deep.equal([]);
    expect(w.table.get(inst!.id)?.draining).to.equal(false);
  });

  it("keeps a function created by an event while the listing was in flight", () => {
    const listing = relist("functions");
    listing.onAttempt();
    const answer = w.registry.list("functions");
    event("created", fnObj("fresh"));
    listing.onList(answer);
    expect(w.catalog.fn("default", "fresh")?.metadata.uid).to.equal("uid-fn-fresh");
  });

  it("keeps a function a lease fetched with registry.get while the listing was in flight", async () => {
    const listing = relist("functions");
    listing.onAttempt();
    const answer = w.registry.list("functions");
    w.registry.set(fnObj("fresh")); // its created event has not arrived yet
    const r = await w.leases.lease(leaseReq("fresh"));
    listing.onList(answer);
    expect(w.catalog.fn("default", "fresh")?.metadata.uid).to.equal("uid-fn-fresh");
    expect(w.table.get(r.lease.instanceId)?.draining).to.equal(false);
  });

  it("applies the whole listing again after a failed attempt: events before the next attempt are older than it", () => {
    const listing = relist("functions");
    listing.onAttempt();
    event("updated", fnObj("hello", { revision: 4, uid: "old", minInstances: 1 }));
    listing.onFailure();
    w.registry.objects.delete("Function/default/hello"); // then deleted while disconnected
    listing.onAttempt();
    listing.onList(w.registry.list("functions"));
    expect(w.catalog.fn("default", "hello")).to.equal(undefined);
  });

  it("treats environments the same way: a delete event during the listing holds, a lost delete is applied", () => {
    w.registry.set(envObj("python"), envObj("go"));
    w.loadCatalog();
    const listing = relist("environments");
    listing.onAttempt();
    const answer = w.registry.list("environments");
    event("deleted", envObj("python"));
    w.registry.objects.delete("Environment/default/go"); // its event was lost
    listing.onList(answer.filter((e) => e.metadata.name !== "go"));
    expect(w.catalog.env("default", "python")).to.equal(undefined);
    expect(w.catalog.env("default", "go")).to.equal(undefined);
    expect(w.catalog.env("default", "node")?.metadata.name).to.equal("node");
  });
});
