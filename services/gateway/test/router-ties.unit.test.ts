import { expect } from "chai";
import { Router, type TriggerRule } from "../src/front-door/router";

/**
 * Two triggers the gateway matches alike although the registry took them as different routes
 * (`a.example` and `a.example:8080`: the gateway compares hosts without the port). Which one
 * answers must not flip when one of them is merely updated: the table compiled from scratch
 * (the gateway's map, in which an update keeps its place) and the one changed route by route
 * must agree.
 */
describe("router: ties between routes", () => {
  const rule = (id: string, target: string, over: Partial<TriggerRule<string>>) =>
    ({ id, target, methods: [], ...over }) as TriggerRule<string>;

  for (const [what, first, second] of [
    ["exact path", { path: "/x" }, { path: "/x" }],
    ["param path", { path: "/u/{id}" }, { path: "/u/{other}" }],
    ["prefix", { prefix: "/api" }, { prefix: "/api/" }],
  ] as const) {
    it(`keeps an updated ${what} route where it was among its ties`, () => {
      const t1 = rule("ns/t1", "f1", { ...first, host: "a.example" });
      const t2 = rule("ns/t2", "f2", { ...second, host: "a.example:8080" });
      const live = new Router<string>([t1, t2], []);
      const url = "path" in first && first.path === "/u/{id}" ? "/u/7" : `${first.path ?? "/api"}`;
      expect(live.match("GET", "a.example", url)?.target).to.equal("f1");
      // t1 now sends to another function: only its target changes.
      const moved = { ...t1, target: "f3" };
      live.setTrigger(moved);
      const fresh = new Router<string>([moved, t2], []); // the map keeps t1's place
      expect(fresh.match("GET", "a.example", url)?.target).to.equal("f3");
      expect(live.match("GET", "a.example", url)?.target).to.equal("f3");
      // Deleted and made again: it goes after its ties, as in the map.
      live.removeTrigger("ns/t1");
      live.setTrigger(t1);
      expect(live.match("GET", "a.example", url)?.target).to.equal("f2");
      expect(new Router<string>([t2, t1], []).match("GET", "a.example", url)?.target).to.equal(
        "f2",
      );
    });
  }
});
