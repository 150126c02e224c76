/**
 * The order of the serial lane (apply-order.ts, freedFirst): trigger updates that change a route
 * or queue group run one at a time, an update leaving a route or group before the update taking
 * it, whatever their order in the files; plan order otherwise. Plans only; nothing is written.
 */
import { expect } from "chai";
import { planWaves } from "../src/spec/apply-order.js";
import type { SpecObject } from "../src/spec/documents.js";
import type { PlanItem } from "../src/spec/plan.js";
import type { StoredObject } from "../src/spec/state.js";

type Spec = Record<string, unknown>;

function update(plural: "httptriggers" | "mqtriggers", name: string, from: Spec, to: Spec) {
  const kind = plural === "httptriggers" ? "HttpTrigger" : "MessageQueueTrigger";
  const at = { kind, namespace: "default", name };
  return {
    action: "update",
    plural,
    ...at,
    changes: ["spec.x"],
    desired: { ...at, plural, labels: {}, spec: to } as unknown as SpecObject,
    current: { kind, metadata: { ...at, revision: 1 }, spec: from } as unknown as StoredObject,
  } as PlanItem;
}

const http = (name: string, from: Spec, to: Spec) =>
  update("httptriggers", name, { function: "f", ...from }, { function: "f", ...to });
const mq = (name: string, from: Spec, to: Spec) =>
  update("mqtriggers", name, { subject: "s", ...from }, { subject: "s", ...to });

describe("spec apply: the serial lane runs a route's freeing update before its taker", () => {
  it("orders a chain of moves backwards from the files' order (host case and a prefix's / ignored)", () => {
    // c takes /b, which b leaves for /a, which a leaves: a, b, c.
    const chain = [
      http("c", { path: "/c" }, { path: "/b", host: "Shop.example" }),
      http("b", { path: "/b", host: "shop.example" }, { prefix: "/a/" }),
      http("a", { prefix: "/a" }, { path: "/z" }),
    ];
    expect(planWaves(chain)).to.deep.equal([[[2, 1, 0]]]);
  });

  it("keeps plan order when nothing is freed for another", () => {
    const apart = [
      http("p", { path: "/p" }, { path: "/q" }),
      http("r", { path: "/r" }, { path: "/s" }),
    ];
    expect(planWaves(apart)).to.deep.equal([[[0, 1]]]);
  });

  it("cuts a swap in one order (the registry refuses one, as one write at a time did)", () => {
    const swap = [
      http("x", { path: "/y" }, { path: "/x" }),
      http("y", { path: "/x" }, { path: "/y" }),
    ];
    expect(planWaves(swap)).to.deep.equal([[[1, 0]]]);
  });

  it("orders a queue group's taker after the trigger leaving the group", () => {
    expect(
      planWaves([mq("q2", {}, { queueGroup: "g" }), mq("q1", { queueGroup: "g" }, {})]),
    ).to.deep.equal([[[1, 0]]]);
  });

  it("orders a taker after an update keeping the route or group but moving its methods or subject away", () => {
    const byMethods = [
      http("t", { path: "/t" }, { path: "/m", methods: ["GET"] }),
      http("m", { path: "/m", methods: ["get"] }, { path: "/m", methods: ["POST"] }),
    ];
    expect(planWaves(byMethods)).to.deep.equal([[[1, 0]]]);
    const bySubject = [
      mq("s2", {}, { subject: "orders.created", queueGroup: "g" }),
      mq(
        "s1",
        { subject: "orders.*", queueGroup: "g" },
        { subject: "payments.*", queueGroup: "g" },
      ),
    ];
    expect(planWaves(bySubject)).to.deep.equal([[[1, 0]]]);
  });

  it("leaves updates that keep their route or group (another function, a param renamed) out of the lane", () => {
    const plan = [
      update(
        "httptriggers",
        "f1",
        { function: "v1", path: "/f1" },
        { function: "v2", path: "/f1" },
      ),
      update(
        "httptriggers",
        "p",
        { function: "v1", path: "/u/{id}" },
        { function: "v1", path: "/u/{x}" },
      ),
      http("mv1", { path: "/a" }, { path: "/b" }),
      update(
        "httptriggers",
        "f2",
        { function: "v1", path: "/f2" },
        { function: "v2", path: "/f2" },
      ),
      http("mv2", { path: "/c" }, { path: "/d" }),
      mq(
        "q",
        { queueGroup: "g", subject: "s", function: "v1" },
        { queueGroup: "g", subject: "s", function: "v2" },
      ),
    ];
    // 10,000 triggers pointed at another function are 10,000 writes side by side, not in a row.
    expect(planWaves(plan)).to.deep.equal([[[0], [1], [2, 4], [3]], [[5]]]);
  });
});
