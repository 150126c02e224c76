import { expect } from "chai";
import type { FunctionObject, HttpTrigger } from "@fizz/events";
import { fakeRouteStore, fn, trigger } from "./routes-fakes";

/**
 * The route table changed one registry event at a time answers as the table a fresh gateway
 * lists and compiles from the same objects, and every route's lease state is the lease
 * manager's own (a route holding a state the manager forgot would miss the invalidations of
 * its function's updates: stale code). Functions deleted while triggers point at them, triggers
 * moved between functions and paths, functions re-created.
 */
function world() {
  const { nats, leases, store } = fakeRouteStore();
  const abort = new AbortController();
  return { nats, leases, store, loading: store.start(abort.signal), stop: () => abort.abort() };
}

describe("route table: one change at a time vs compiled from a listing", () => {
  it("agrees after every event, and routes hold the lease manager's own state", async () => {
    let seed = 11;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const pick = <V>(xs: readonly V[]): V => xs[Math.floor(rand() * xs.length)]!;
    const live = world();
    await live.nats.list("functions", []);
    await live.nats.list("httptriggers", []);
    await live.loading;
    const fns = new Map<string, FunctionObject>();
    const trs = new Map<string, HttpTrigger>();
    let gen = 0;
    const paths = ["/a", "/b", "/c/{id}", "/d/e"];
    const urls = [
      "/a",
      "/b",
      "/c/1",
      "/d/e",
      "/d/e/f",
      "/function/f0",
      "/function/f1/x",
      "/function/f2",
    ];
    for (let step = 0; step < 300; step++) {
      const r = rand();
      gen++;
      if (r < 0.3) {
        const name = pick(["f0", "f1", "f2"]);
        const cur = fns.get(name);
        if (cur && rand() < 0.5) {
          fns.delete(name);
          await live.nats.changed("deleted", cur);
        } else {
          const f = fn(name);
          f.metadata.uid = cur ? cur.metadata.uid : `uid-${name}-${gen}`;
          f.metadata.revision = cur ? cur.metadata.revision + 1 : 1;
          f.metadata.createdAt = new Date(gen * 1000).toISOString();
          fns.set(name, f);
          await live.nats.changed(cur ? "updated" : "created", f);
        }
      } else {
        const name = pick(["t0", "t1", "t2", "t3"]);
        const cur = trs.get(name);
        if (cur && rand() < 0.3) {
          trs.delete(name);
          await live.nats.changed("deleted", cur);
        } else {
          const path = pick(paths);
          // The registry refuses a path another trigger holds.
          if ([...trs.values()].some((o) => o.metadata.name !== name && o.spec.path === path))
            continue;
          const t = trigger(name, path, pick(["f0", "f1", "f2"]));
          if (rand() < 0.3) t.spec = { ...t.spec, path: undefined, prefix: "/d" };
          if (
            t.spec.prefix &&
            [...trs.values()].some((o) => o.metadata.name !== name && o.spec.prefix)
          )
            continue;
          t.metadata.uid = cur ? cur.metadata.uid : `uid-${name}-${gen}`;
          t.metadata.revision = cur ? cur.metadata.revision + 1 : 1;
          trs.set(name, t);
          await live.nats.changed(cur ? "updated" : "created", t);
        }
      }
      const fresh = world();
      await fresh.nats.list("functions", [...fns.values()]);
      await fresh.nats.list("httptriggers", [...trs.values()]);
      await fresh.loading;
      for (const url of urls) {
        const a = live.store.router!.match("GET", undefined, url);
        const b = fresh.store.router!.match("GET", undefined, url);
        expect(a?.target.key, `${step} ${url}`).to.equal(b?.target.key);
        expect(a?.trigger, `${step} ${url}`).to.equal(b?.trigger);
        if (a) {
          const own = live.leases.get(a.target.namespace, a.target.name);
          expect(own, `${step} ${url}: the manager's own state`).to.equal(a.target);
          const f = fns.get(a.target.name);
          if (f) expect(a.target.minRevision, `${step} ${url}`).to.be.at.least(f.metadata.revision);
        }
      }
      expect(live.store.router!.size, `${step}`).to.equal(fresh.store.router!.size);
      fresh.stop();
    }
    live.stop();
  });
});
