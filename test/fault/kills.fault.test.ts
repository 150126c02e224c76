import { expect } from "chai";
import { workerJs } from "../e2e/functions";
import {
  alive,
  COMPONENTS,
  descendants,
  deployWarm,
  killAndMeasure,
  Load,
  missingWrites,
  ok,
  shutdown,
  sleep,
  startFaultPlatform,
  unfinishedCalls,
  type FaultPlatform,
  type KillResult,
} from "./harness";

/**
 * Issue 9, supervision: kill -9 each service, NATS and Redis in turn under steady warm HTTP load,
 * async calls and registry writes, with `npm start`'s supervisor in place. A crash must stop
 * nothing: warm requests fail only while the gateway itself is down, no accepted async call is
 * lost, and no registry write that was acknowledged goes missing.
 */
describe("a crash stops nothing (kill -9 under load)", function () {
  this.timeout(120_000);
  let p: FaultPlatform | undefined;
  let load: Load | undefined;
  const results: KillResult[] = [];

  before(async function () {
    this.timeout(120_000);
    p = await startFaultPlatform();
    await deployWarm(p);
    load = new Load(p);
    await sleep(1500);
  });
  after(async function () {
    this.timeout(60_000);
    if (results.length) console.log(`      error windows: ${summary(results)}`);
    await shutdown(p, load);
  });
  afterEach(function () {
    if (this.currentTest?.state === "failed" && p) console.log(p.logs.slice(-80).join("\n"));
  });

  it("leaves no instance of a killed poolkeeper running: they die with it, none orphaned", async () => {
    const old = p!.pid("poolkeeper");
    const instances = await descendants(old);
    expect(instances.length, "instances (node and python warm pools)").to.be.greaterThan(1);
    const r = await killAndMeasure(p!, load!, "poolkeeper");
    results.push(r);
    expect(r.warm.failed, `warm errors ${JSON.stringify(r.warm)}`).to.equal(0);
    const deadline = Date.now() + 5000;
    let left = await alive(instances);
    while (left.length && Date.now() < deadline) {
      await sleep(100);
      left = await alive(instances);
    }
    expect(left, "processes of the killed poolkeeper still alive").to.deep.equal([]);
  });

  for (const component of COMPONENTS.filter((c) => c !== "poolkeeper")) {
    it(`keeps warm traffic ${component === "gateway" ? "failing only while the gateway is down" : "flowing"} when ${component} is killed and restarted`, async () => {
      const r = await killAndMeasure(p!, load!, component);
      results.push(r);
      const warm = r.warm;
      if (component === "gateway") {
        // Requests fail from the kill until the new gateway listens and has its routes.
        expect(warm.windowMs, `warm error window ${JSON.stringify(warm)}`).to.be.below(
          r.restartMs + 3000,
        );
      } else {
        expect(warm.failed, `warm errors ${JSON.stringify(warm)}`).to.equal(0);
      }
    });
  }

  it("serves a function created after every component restarted (each resynced)", async () => {
    await ok(
      p!.api("POST", "/v1/namespaces/default/functions", {
        name: "after",
        spec: {
          environment: "node",
          code: { filename: "f.js", content: Buffer.from(workerJs("after")).toString("base64") },
        },
      }),
      "create function",
    );
    const r = await fetch(`${p!.gatewayUrl}/function/after`);
    const body = await r.text();
    expect(r.status, body).to.equal(200);
    expect((JSON.parse(body) as { answer: string }).answer).to.equal("after");
  });

  it("loses no accepted async call: every 202 call id succeeds", async () => {
    await load!.stop();
    expect(load!.accepted.length, "async calls accepted").to.be.greaterThan(20);
    const left = await unfinishedCalls(p!, load!.accepted, 60_000);
    expect([...left].slice(0, 5), `${left.size} accepted calls never succeeded`).to.deep.equal([]);
  });

  it("loses no acknowledged registry write, including those during the Redis kill", async () => {
    expect(load!.acknowledged.length, "writes acknowledged").to.be.greaterThan(20);
    expect(await missingWrites(p!, load!.acknowledged)).to.deep.equal([]);
  });
});

function summary(results: readonly KillResult[]): string {
  return results
    .map(
      (r) =>
        `${r.component}: restart ${r.restartMs} ms, warm ${r.warm.failed}/${r.warm.total} failed ` +
        `(${r.warm.windowMs} ms, slowest ${r.warm.maxLatencyMs} ms), async ${r.async.failed} refused (${r.async.windowMs} ms), ` +
        `writes ${r.writes.failed} refused (${r.writes.windowMs} ms)` +
        (r.warm.samples.length ? ` [${r.warm.samples.join(" | ")}]` : ""),
    )
    .join("\n        ");
}
