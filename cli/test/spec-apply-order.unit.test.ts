/**
 * Carrying out a plan with writes in flight together (apply-order.ts, apply.ts), against a fake
 * registry client that keeps objects, refuses what the real one would (a trigger of a function
 * not there yet, a function of a package not built yet, a route another trigger holds) and
 * records every write's start and end.
 */
import { expect } from "chai";
import { ApplyFailedError, executePlan, type ItemResult } from "../src/spec/apply.js";
import { planWaves } from "../src/spec/apply-order.js";
import type { PlanItem } from "../src/spec/plan.js";
import { contextOf, FakeRegistry, item, moved, stored } from "./spec-apply-fakes.js";

async function apply(fake: FakeRegistry, plan: PlanItem[], parallel?: number) {
  const shown: ItemResult[] = [];
  const done = await executePlan(contextOf(fake), plan, {
    spec: "demo",
    waitTimeoutSeconds: 5,
    ...(parallel !== undefined ? { parallel } : {}),
    onResult: (r) => shown.push(r),
  });
  return { done, shown };
}

const fns = (n: number, extra: Record<string, unknown> = {}) =>
  Array.from({ length: n }, (_, i) =>
    item("create", "functions", `f-${i}`, { environment: "node", ...extra }),
  );
const routes = (n: number) =>
  Array.from({ length: n }, (_, i) =>
    item("create", "httptriggers", `f-${i}`, { function: `f-${i}`, path: `/f-${i}` }),
  );

describe("spec apply: writes in flight together, in dependency waves", () => {
  it("groups a plan into waves of one kind and one action; claiming trigger updates share a lane", () => {
    const plan = [
      item("delete", "httptriggers", "old"),
      item("create", "environments", "node"),
      item("update", "functions", "a", {}, ["spec.maxInstances"]),
      item("unchanged", "functions", "b"),
      item("create", "functions", "c"),
      item("create", "functions", "d"),
      moved(item("update", "httptriggers", "x", { path: "/x2" }, ["spec.path"]), { path: "/x" }),
      item("update", "httptriggers", "l", {}, ["labels"]),
      moved(item("update", "httptriggers", "y", { path: "/y2" }, ["spec.path"]), { path: "/y" }),
      item("create", "httptriggers", "z"),
      item("create", "timetriggers", "t"),
      item("delete", "functions", "gone"),
      item("keep", "environments", "python"),
    ];
    expect(planWaves(plan)).to.deep.equal([
      [[0]],
      [[1]],
      [[2], [3]],
      [[4], [5]],
      [[6, 8], [7]],
      [[9]],
      [[10]],
      [[11]],
      [[12]],
    ]);
  });

  it("has more than one write in flight, never more than --parallel", async () => {
    const fake = new FakeRegistry();
    const plan = [item("create", "environments", "node"), ...fns(60)];
    await apply(fake, plan, 8);
    expect(fake.maxInFlight).to.equal(8);
    expect(fake.started()).to.have.length(61);

    const one = new FakeRegistry();
    await apply(one, plan, 1);
    expect(one.maxInFlight).to.equal(1);
    expect(one.started()).to.deep.equal(plan.map((i) => `${i.plural}/${i.name}`));
  });

  it("never writes a trigger before its function, nor a function before its environment", async () => {
    const fake = new FakeRegistry();
    // A slow function among quick ones: its trigger still waits for it.
    fake.delays.set("functions/f-3", 40);
    const plan = [item("create", "environments", "node"), ...fns(40), ...routes(40)];
    const { done } = await apply(fake, plan, 16);
    expect(done.map((r) => r.action)).to.deep.equal(plan.map(() => "created"));
    for (let i = 0; i < 40; i++) {
      expect(fake.startOf(`httptriggers/f-${i}`)).to.be.above(fake.endOf(`functions/f-${i}`));
      expect(fake.startOf(`functions/f-${i}`)).to.be.above(fake.endOf("environments/node"));
    }
  });

  it("reports results in plan order though writes finish in another", async () => {
    const fake = new FakeRegistry();
    fake.delays.set("functions/f-0", 30);
    const plan = [item("create", "environments", "node"), ...fns(30), ...routes(30)];
    const { done, shown } = await apply(fake, plan, 16);
    const names = plan.map((i) => `${i.kind} ${i.name}`);
    expect(shown.map((r) => `${r.kind} ${r.name}`)).to.deep.equal(names);
    expect(done.map((r) => `${r.kind} ${r.name}`)).to.deep.equal(names);
    // Finished out of order: f-0 was the last function to end.
    const ends = fake.events.filter((e) => e.phase === "end" && e.key.startsWith("functions/"));
    expect(ends.at(-1)!.key).to.equal("functions/f-0");
  });

  it("stops at the first refusal without starting later writes; in-flight ones finish and are reported", async () => {
    const fake = new FakeRegistry();
    fake.refuse.set("create functions/f-5", "environment is gone (UNKNOWN_ENVIRONMENT)");
    fake.delays.set("functions/f-5", 10);
    const plan = [item("create", "environments", "node"), ...fns(40), ...routes(40)];
    const shown: ItemResult[] = [];
    const err = await executePlan(contextOf(fake), plan, {
      spec: "demo",
      waitTimeoutSeconds: 5,
      parallel: 4,
      onResult: (r) => shown.push(r),
    }).catch((e: unknown) => e);

    expect(err).to.be.instanceOf(ApplyFailedError);
    const failed = err as ApplyFailedError;
    expect(failed.item.name).to.equal("f-5");
    expect(failed.message).to.equal("environment is gone (UNKNOWN_ENVIRONMENT)");
    const refusedAt = fake.endOf("functions/f-5");
    // Nothing started after the refusal; no trigger at all.
    for (const e of fake.events)
      if (e.phase === "start") expect(e.at, e.key).to.be.below(refusedAt);
    expect(fake.started().filter((k) => k.startsWith("httptriggers/"))).to.deep.equal([]);
    // Writes running alongside finished, and are reported as done, in plan order.
    const made = fake.events.filter((e) => e.phase === "end").map((e) => e.key);
    expect(made.length).to.be.above(6);
    expect(failed.done.map((r) => `${r.kind} ${r.name}`)).to.deep.equal(
      plan.filter((i) => made.includes(`${i.plural}/${i.name}`)).map((i) => `${i.kind} ${i.name}`),
    );
    expect(shown).to.deep.equal(failed.done);
    // Everything else is "not tried", the refused write apart.
    expect(failed.notTried.length + failed.done.length + 1).to.equal(plan.length);
    expect(failed.notTried.map((i) => i.name)).to.include("f-39");
    expect(failed.alsoRefused).to.deep.equal([]);
  });

  it("waits for a package's build before the functions pointed at it", async () => {
    const fake = new FakeRegistry();
    const plan = [
      item("create", "environments", "node"),
      item("create", "packages", "app", { environment: "node" }),
      ...fns(10, { package: { name: "app" } }),
    ];
    const { done } = await apply(fake, plan, 16);
    expect(done[1]!.detail).to.match(/^deployment sha256:d1/);
    expect(done.slice(2).map((r) => r.action)).to.deep.equal(Array(10).fill("created"));
  });

  it("runs updates that move routes one at a time, so one trigger frees a route before another takes it", async () => {
    const fake = new FakeRegistry();
    fake.objects.set("functions/f", stored("functions", "f", {}));
    const a = item("update", "httptriggers", "a", { function: "f", path: "/new" }, ["spec.path"]);
    const b = item("update", "httptriggers", "b", { function: "f", path: "/a" }, ["spec.path"]);
    // Their own stored specs: item() shares one object between current and desired, and
    // setting current.spec.path there moved the desired route too (no route was ever moved).
    a.current!.spec = { function: "f", path: "/a" };
    b.current!.spec = { function: "f", path: "/b" };
    fake.hold(a, b);
    // b's update would be refused if it ran before a's had freed /a: slow a down.
    fake.delays.set("httptriggers/a", 20);
    fake.delays.set("httptriggers/b", 1);
    const { done } = await apply(fake, [a, b], 16);
    expect(done.map((r) => r.action)).to.deep.equal(["updated", "updated"]);
    expect(fake.startOf("httptriggers/b")).to.be.above(fake.endOf("httptriggers/a"));
  });

  it("runs a route's freeing update before the update taking it, whatever their plan order", async () => {
    // Listed in the files taker first: in plan order b's update is refused on every run, since a
    // still holds /a; apply would never converge.
    const fake = new FakeRegistry();
    fake.objects.set("functions/f", stored("functions", "f", {}));
    const b = item("update", "httptriggers", "b", { function: "f", path: "/a" }, ["spec.path"]);
    const a = item("update", "httptriggers", "a", { function: "f", path: "/new" }, ["spec.path"]);
    // current and desired are one spec object in item(): the stored one gets its own.
    b.current!.spec = { function: "f", path: "/b" };
    a.current!.spec = { function: "f", path: "/a" };
    fake.hold(a, b);
    const { done, shown } = await apply(fake, [b, a], 16);
    expect(done.map((r) => `${r.name} ${r.action}`)).to.deep.equal(["b updated", "a updated"]);
    expect(shown.map((r) => r.name)).to.deep.equal(["b", "a"]);
    expect(fake.startOf("httptriggers/b")).to.be.above(fake.endOf("httptriggers/a"));
  });

  it("stops starting writes when printing a result throws, and fails only once in-flight ones end", async () => {
    const fake = new FakeRegistry();
    const plan = [item("create", "environments", "node"), ...fns(60)];
    let thrownAt = -1;
    let calls = 0;
    const err = await executePlan(contextOf(fake), plan, {
      spec: "demo",
      waitTimeoutSeconds: 5,
      parallel: 4,
      onResult: () => {
        if (++calls === 5) {
          thrownAt = fake.events.length;
          throw new Error("stdout is gone");
        }
      },
    }).catch((e: unknown) => e);
    const inFlightAtFailure = fake.inFlight;
    await new Promise((r) => setTimeout(r, 50));
    expect((err as Error).message).to.equal("stdout is gone");
    expect(inFlightAtFailure).to.equal(0);
    const startedAfter = fake.events.slice(thrownAt).filter((e) => e.phase === "start");
    expect(startedAfter.map((e) => e.key)).to.deep.equal([]);
  });

  it("refuses a parallel below 1 instead of reporting success with nothing written", async () => {
    for (const parallel of [0, -1, 1.5, Number.NaN]) {
      const fake = new FakeRegistry();
      const err = await apply(fake, fns(3), parallel).catch((e: unknown) => e);
      expect(err, String(parallel)).to.be.instanceOf(RangeError);
      expect(fake.started()).to.deep.equal([]);
    }
  });

  it("holds at most the code-bytes budget of function code in requests at once", async () => {
    const fake = new FakeRegistry();
    const bytes = Buffer.alloc(1024 * 1024, 7);
    const plan = [item("create", "environments", "node"), ...fns(20)];
    for (const i of plan.slice(1)) {
      i.desired!.spec.code = { filename: "f.js" };
      i.desired!.codeFile = { bytes, digest: "sha256:x" };
    }
    const { done } = await executePlan(contextOf(fake), plan, {
      spec: "demo",
      waitTimeoutSeconds: 5,
      parallel: 16,
      codeBytesInFlight: 4 * 1024 * 1024,
      onResult: () => {},
    }).then((d) => ({ done: d }));
    expect(done).to.have.length(21);
    // 16 writes of 1 MiB each at once would be 16 MiB of code (and its base64, and the JSON).
    expect(fake.maxCodeInFlight).to.equal(4 * 1024 * 1024);
    // A file over the whole budget still goes, alone.
    const big = new FakeRegistry();
    const one = [item("create", "environments", "node"), ...fns(2)];
    for (const i of one.slice(1)) {
      i.desired!.spec.code = { filename: "f.js" };
      i.desired!.codeFile = { bytes: Buffer.alloc(3 * 1024 * 1024), digest: "sha256:y" };
    }
    await executePlan(contextOf(big), one, {
      spec: "demo",
      waitTimeoutSeconds: 5,
      codeBytesInFlight: 2 * 1024 * 1024,
      onResult: () => {},
    });
    expect(big.maxCodeInFlight).to.equal(3 * 1024 * 1024);
  });

  it("a write still waiting (for its package's build) when another is refused is not sent", async () => {
    const fake = new FakeRegistry();
    const deployment = { digest: "sha256:d1", size: 1 };
    // Left building by an earlier, interrupted apply: its functions wait for it.
    const pkg = item("unchanged", "packages", "app", { environment: "node", deployment });
    fake.hold(pkg);
    setTimeout(() => {
      fake.objects.get("packages/app")!.status = { buildState: "succeeded", deployment };
    }, 150);
    fake.refuse.set("create functions/f-0", "no (X)");
    const plan = [
      item("create", "environments", "node"),
      pkg,
      item("create", "functions", "f-0", { environment: "node" }),
      item("create", "functions", "f-1", { environment: "node", package: { name: "app" } }),
    ];
    const err = (await apply(fake, plan, 16).catch((e: unknown) => e)) as ApplyFailedError;
    expect(err).to.be.instanceOf(ApplyFailedError);
    expect(err.item.name).to.equal("f-0");
    expect(fake.started()).not.to.include("functions/f-1");
    expect(err.notTried.map((i) => i.name)).to.deep.equal(["f-1"]);
    expect(err.alsoRefused).to.deep.equal([]);
  });

  it("names the other writes refused while running with the first", async () => {
    const fake = new FakeRegistry();
    fake.refuse.set("create functions/f-1", "one (X)");
    fake.refuse.set("create functions/f-2", "two (Y)");
    fake.delays.set("functions/f-1", 15);
    fake.delays.set("functions/f-2", 5);
    const plan = [item("create", "environments", "node"), ...fns(4)];
    const err = (await apply(fake, plan, 16).catch((e: unknown) => e)) as ApplyFailedError;
    expect(err.item.name).to.equal("f-1");
    expect(err.alsoRefused.map((r) => [r.item.name, (r.reason as Error).message])).to.deep.equal([
      ["f-2", "two (Y)"],
    ]);
    expect(err.done.map((r) => r.name)).to.deep.equal(["node", "f-0", "f-3"]);
  });
});
