import { expect } from "chai";
import { functionLookup } from "../src/bus/start-bus";
import { fakeRouteStore, fn, trigger } from "./routes-fakes";

/**
 * The relist after a NATS reconnect, once the table is loaded: changes that arrive while it is in
 * flight are applied at once (so `gateway.sync` answers "applied" truthfully), the list that
 * lands afterwards does not undo them, and what it lacks (deleted while events were lost) goes.
 */
async function loadedWorld(functions: string[]) {
  const { nats, leases, store } = fakeRouteStore();
  const abort = new AbortController();
  const loading = store.start(abort.signal);
  await nats.list("functions", functions.map(fn));
  await nats.list("httptriggers", [trigger("orders", "/orders", "hello")]);
  await loading;
  expect(store.loaded).to.equal(true);
  const lookup = functionLookup(store, leases);
  return {
    nats,
    store,
    lookup,
    signal: abort.signal,
    routes: (name: string) =>
      store.router?.match("POST", undefined, `/function/${name}`)?.target.name === name,
    stop: () => {
      abort.abort();
      store.stop();
    },
  };
}

describe("route table relist after a reconnect", () => {
  it("a function created during the relist (gateway.sync) routes at once, and the older list landing afterwards keeps it", async () => {
    const w = await loadedWorld(["hello"]);
    try {
      await w.nats.reconnect();
      expect(w.nats.lists.map((l) => l.kind)).to.have.members(["functions", "httptriggers"]);
      // The registry's lists were taken before the function was created.
      const created = fn("fresh");
      w.nats.objects.set("functions/default/fresh", created);
      const applied = await w.store.sync(
        { kind: "functions", op: "created", namespace: "default", name: "fresh", revision: 1 },
        w.signal,
      );
      expect(applied).to.equal(true);
      expect(w.routes("fresh"), "routes as soon as sync answered applied").to.equal(true);
      expect(w.lookup("default", "fresh")?.name, "the bus side knows it").to.equal("fresh");

      // Its event arrives too, then the stale lists land.
      await w.nats.created(created);
      await w.nats.list("functions", [fn("hello")]);
      await w.nats.list("httptriggers", [trigger("orders", "/orders", "hello")]);
      expect(w.routes("fresh"), "the older list does not remove it").to.equal(true);
      expect(w.routes("hello")).to.equal(true);
      expect(w.store.router!.match("GET", undefined, "/orders")?.target.name).to.equal("hello");
    } finally {
      w.stop();
    }
  });

  it("a function created by an event during the relist routes at once and stays", async () => {
    const w = await loadedWorld(["hello"]);
    try {
      await w.nats.reconnect();
      await w.nats.created(fn("fresh"));
      expect(w.routes("fresh")).to.equal(true);
      await w.nats.list("functions", [fn("hello")]);
      await w.nats.list("httptriggers", []);
      expect(w.routes("fresh")).to.equal(true);
    } finally {
      w.stop();
    }
  });

  it("a function deleted during the relist is not brought back by the older list", async () => {
    const w = await loadedWorld(["hello", "doomed"]);
    try {
      await w.nats.reconnect();
      await w.nats.changed("deleted", fn("doomed"));
      expect(w.routes("doomed")).to.equal(false);
      await w.nats.list("functions", [fn("hello"), fn("doomed")]);
      await w.nats.list("httptriggers", []);
      expect(w.routes("doomed")).to.equal(false);
      expect(w.lookup("default", "doomed")).to.equal(null);
    } finally {
      w.stop();
    }
  });

  it("a function deleted while disconnected (its event lost) is gone after the relist", async () => {
    const w = await loadedWorld(["hello", "gone"]);
    try {
      expect(w.routes("gone")).to.equal(true);
      await w.nats.reconnect();
      await w.nats.list("functions", [fn("hello")]);
      await w.nats.list("httptriggers", [trigger("orders", "/orders", "hello")]);
      expect(w.routes("gone")).to.equal(false);
      expect(w.lookup("default", "gone"), "unknown now: NOT_FOUND is right").to.equal(null);
      expect(w.routes("hello")).to.equal(true);
    } finally {
      w.stop();
    }
  });

  it("a function the registry left out of the relist because it cannot read it keeps routing", async () => {
    const w = await loadedWorld(["hello", "unreadable"]);
    try {
      await w.nats.reconnect();
      await w.nats.list("functions", [fn("hello")], [{ namespace: "default", name: "unreadable" }]);
      await w.nats.list("httptriggers", [trigger("orders", "/orders", "hello")]);
      expect(w.routes("unreadable"), "not taken for deleted").to.equal(true);
      expect(w.lookup("default", "unreadable")?.name).to.equal("unreadable");
      expect(w.store.router!.match("GET", undefined, "/orders")?.target.name).to.equal("hello");
    } finally {
      w.stop();
    }
  });
});
