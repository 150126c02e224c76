import { expect } from "chai";
import {
  COMPONENTS,
  deployWarm,
  killAndMeasure,
  Load,
  missingWrites,
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

  for (const component of COMPONENTS) {
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
        `(${r.warm.windowMs} ms), async ${r.async.failed} refused (${r.async.windowMs} ms), ` +
        `writes ${r.writes.failed} refused (${r.writes.windowMs} ms)` +
        (r.warm.samples.length ? ` [${r.warm.samples.join(" | ")}]` : ""),
    )
    .join("\n        ");
}
