import { expect } from "chai";
import { fakeRouteStore, fn, trigger } from "./routes-fakes";

/**
 * The lease manager keeps a function's state while any route of the table names it (its own
 * `/function/` route or a trigger's) and forgets it with the last one, whether the routes go one
 * change at a time or a relist rebuilds the table. Kept too long, every deleted function's state
 * stays for good; forgotten too early, a route holds a state the manager no longer updates (its
 * function's updates would not invalidate the leases it holds: stale code).
 */
async function world() {
  const { nats, leases, store } = fakeRouteStore();
  const abort = new AbortController();
  const loading = store.start(abort.signal);
  const hello = fn("hello");
  const orders = trigger("orders", "/orders", "hello");
  await nats.list("functions", [hello, fn("other")]);
  await nats.list("httptriggers", [orders]);
  await loading;
  const routedTo = (url: string) => store.router?.match("GET", undefined, url)?.target;
  return { nats, leases, hello, orders, routedTo, stop: () => (abort.abort(), store.stop()) };
}

describe("route table: lease state lives as long as a route names its function", () => {
  it("keeps it while a trigger still names a deleted function, forgets it with the trigger", async () => {
    const w = await world();
    try {
      const state = w.leases.get("default", "hello");
      expect(state).to.not.equal(undefined);
      expect(w.routedTo("/orders")).to.equal(state);
      await w.nats.changed("deleted", w.hello);
      // The trigger still names it: same state (a new function of that name takes it over).
      expect(w.routedTo("/function/hello")).to.equal(undefined);
      expect(w.leases.get("default", "hello")).to.equal(state);
      await w.nats.changed("deleted", w.orders);
      expect(w.leases.get("default", "hello")).to.equal(undefined);
      expect(w.leases.get("default", "other")).to.not.equal(undefined);
    } finally {
      w.stop();
    }
  });

  it("forgets it once a trigger moves away from a deleted function", async () => {
    const w = await world();
    try {
      await w.nats.changed("deleted", w.hello);
      const moved = trigger("orders", "/orders", "other");
      moved.metadata.revision = 2;
      await w.nats.changed("updated", moved);
      expect(w.routedTo("/orders")).to.equal(w.leases.get("default", "other"));
      expect(w.leases.get("default", "hello")).to.equal(undefined);
    } finally {
      w.stop();
    }
  });

  it("counts routes afresh when a relist rebuilds the table", async () => {
    const w = await world();
    try {
      // Two relists of the same objects: each rebuilds the whole table.
      for (let i = 0; i < 2; i++) {
        await w.nats.reconnect();
        await w.nats.list("functions", [w.hello, fn("other")]);
        await w.nats.list("httptriggers", [w.orders]);
      }
      expect(w.routedTo("/orders")).to.equal(w.leases.get("default", "hello"));
      await w.nats.changed("deleted", w.orders);
      expect(w.leases.get("default", "hello")).to.not.equal(undefined);
      await w.nats.changed("deleted", w.hello);
      expect(w.leases.get("default", "hello")).to.equal(undefined);
    } finally {
      w.stop();
    }
  });
});
