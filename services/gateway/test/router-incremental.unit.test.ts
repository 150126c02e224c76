import { expect } from "chai";
import { Router, type TriggerRule } from "../src/front-door/router";

type T = string;

function trigger(id: string, over: Partial<TriggerRule<T>>): TriggerRule<T> {
  return { id, target: id, methods: [], ...over };
}

/** A tiny seeded generator, so a failing case can be replayed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** What the registry's route-conflict check refuses: same host and shape, a method in common. */
function conflict(a: TriggerRule<T>, b: TriggerRule<T>): boolean {
  const shape = (t: TriggerRule<T>) =>
    `${(t.host ?? "").toLowerCase()}|${t.path !== undefined ? `p:${t.path.replace(/\{[^/{}]*\}/g, "{}")}` : `x:${t.prefix}`}`;
  const overlap =
    a.methods.length === 0 ||
    b.methods.length === 0 ||
    a.methods.some((m) => b.methods.includes(m));
  return shape(a) === shape(b) && overlap;
}

describe("router: one route changed at a time", () => {
  it("matches as a table compiled from scratch after every add, replace and remove", () => {
    const rand = rng(42);
    const pick = <V>(xs: readonly V[]): V => xs[Math.floor(rand() * xs.length)]!;
    const segs = ["a", "b", "c", "{id}", "{x}"];
    const randomPath = () =>
      "/" + Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick(segs)).join("/");
    const randomRule = (id: string): TriggerRule<T> => {
      const kind = rand();
      const host = rand() < 0.3 ? pick(["h.example", "H.example", "other.example"]) : undefined;
      const methods = rand() < 0.5 ? [] : [pick(["GET", "POST"])];
      const path = randomPath();
      if (kind < 0.35)
        return trigger(id, { prefix: path.replace(/\{[^}]*\}/g, "p"), host, methods });
      return trigger(id, { path, host, methods });
    };
    const rules = new Map<string, TriggerRule<T>>();
    const live = new Router<T>([], []);
    const requests = [
      "/",
      "/a",
      "/a/",
      "/a/b",
      "/a/b/c",
      "/a/p/c?q=1",
      "/b/7/c",
      "/c/p",
      "/p/a/b",
      "/zzz",
    ];
    for (let step = 0; step < 400; step++) {
      const id = `t${Math.floor(rand() * 30)}`;
      if (rand() < 0.25) {
        rules.delete(id);
        live.removeTrigger(id);
      } else {
        const rule = randomRule(id);
        // The registry refuses a route another trigger claims (route-conflict.ts).
        if ([...rules.values()].some((o) => o.id !== id && conflict(o, rule))) continue;
        rules.set(id, rule);
        live.setTrigger(rule);
      }
      const fresh = new Router<T>([...rules.values()], []);
      expect(live.size).to.equal(fresh.size);
      expect(live.usesHost).to.equal(fresh.usesHost);
      for (const url of requests)
        for (const method of ["GET", "POST"])
          for (const host of [undefined, "h.example", "other.example:8080"]) {
            const a = live.match(method, host, url);
            const b = fresh.match(method, host, url);
            expect(a, `${step} ${method} ${host} ${url}`).to.deep.equal(b);
          }
    }
  });

  it("matches a prefix from a path with a trailing slash and from deep paths", () => {
    const r = new Router<T>(
      [trigger("ab", { prefix: "/a/b" }), trigger("root", { prefix: "/" })],
      [],
    );
    expect(r.match("GET", undefined, "/a/b/")?.target).to.equal("ab");
    expect(r.match("GET", undefined, "/a/b/c/d/e")?.target).to.equal("ab");
    expect(r.match("GET", undefined, "/a/bc")?.target).to.equal("root");
    expect(r.match("GET", undefined, "/")?.target).to.equal("root");
    expect(r.match("GET", undefined, "*")).to.equal(undefined);
    r.removeTrigger("root");
    expect(r.match("GET", undefined, "/a/bc")).to.equal(undefined);
  });

  it("adds and removes /function/ routes one at a time", () => {
    const r = new Router<T>([], []);
    r.setFunction({ namespace: "default", name: "f", target: "f" });
    r.setFunction({ namespace: "other", name: "g", target: "g" });
    expect(r.size).to.equal(2);
    expect(r.match("GET", undefined, "/function/f")?.target).to.equal("f");
    expect(r.match("GET", undefined, "/function/g.other/x")?.url).to.equal("/x");
    r.removeFunction("default", "f");
    expect(r.match("GET", undefined, "/function/f")).to.equal(undefined);
    expect(r.size).to.equal(1);
  });
});
