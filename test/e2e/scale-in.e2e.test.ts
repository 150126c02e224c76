import { expect } from "chai";
import { startPlatform, type Platform } from "./helpers";
import { workerJs, type WorkerAnswer } from "./functions";
import {
  alive,
  dumpLogsOnFailure,
  eventually,
  Instances,
  json,
  fizzOk,
  pidOfInstance,
  sleep,
  timed,
} from "./probes";

/**
 * Issue 3, scale in: instances idle past the function's idleTimeout are retired (their processes
 * end), minInstances stay specialized (even before the first request), and the warm pools refill
 * after specializations took from them.
 */
describe("scaling in, end to end", function () {
  this.timeout(60_000);
  let p: Platform;
  let instances: Instances;

  before(async () => {
    p = await startPlatform({
      FIZZ_REAP_INTERVAL_MS: "200",
      FIZZ_REPORT_INTERVAL_MS: "200",
      FIZZ_DRAIN_MS: "500",
      FIZZ_KILL_GRACE_MS: "500",
    });
    instances = await Instances.connect(p);
    await p.file("worker.js", workerJs());
    await fizzOk(p, "env create --name node --image fizz/env-node --poolsize 2");
  });
  after(async () => {
    await instances?.close();
    await p?.stop();
  });
  afterEach(dumpLogsOnFailure(() => p));

  const url = (fn: string, query = "") =>
    `${p.gatewayUrl}/function/${fn}${query ? `?${query}` : ""}`;

  async function burst(fn: string, n: number, ms: number): Promise<WorkerAnswer[]> {
    const results = await Promise.all(Array.from({ length: n }, () => timed(url(fn, `ms=${ms}`))));
    for (const r of results) expect(r.status, r.text || r.error).to.equal(200);
    return results.map((r) => json<WorkerAnswer>(r));
  }

  it("retires instances idle past idleTimeout, and their processes end", async () => {
    await fizzOk(
      p,
      "fn create --name idler --env node --code worker.js --concurrency 1 --idle-timeout 1",
    );
    const answers = await burst("idler", 2, 800);
    const ids = [...new Set(answers.map((a) => a.id))];
    expect(ids).to.have.length(2);
    const pids = answers.map((a) => a.pid);
    await eventually(
      "idle instances of idler retired",
      async () => (await instances.of("idler")).length === 0,
      10_000,
    );
    await eventually("their processes are gone", () => pids.every((pid) => !alive(pid)), 5000);
  });

  it("minInstances 1: one instance is specialized before the first request", async () => {
    await fizzOk(
      p,
      "fn create --name keeper --env node --code worker.js --concurrency 1 --max-instances 3 --min-instances 1 --idle-timeout 1",
    );
    // No request sent: the platform specializes it on its own.
    const pre = await eventually(
      "one instance of keeper exists before any request",
      async () => {
        const list = await instances.of("keeper");
        return list.length === 1 ? list : undefined;
      },
      8000,
    );
    const r = await timed(url("keeper"));
    expect(r.status, r.text || r.error).to.equal(200);
    expect(
      json<WorkerAnswer>(r).id,
      "the first request is served by the pre-warmed instance",
    ).to.equal(pre[0]?.id);
  });

  it("minInstances 1: after a burst, idle instances go down to exactly one, which stays and serves", async () => {
    // keeper exists from the previous test (or is created here when run alone).
    if ((await p.fizz("fn", "get", "--name", "keeper")).code !== 0) {
      await fizzOk(
        p,
        "fn create --name keeper --env node --code worker.js --concurrency 1 --max-instances 3 --min-instances 1 --idle-timeout 1",
      );
    }
    const answers = await burst("keeper", 3, 800);
    expect(new Set(answers.map((a) => a.id)).size).to.equal(3);
    await eventually(
      "keeper down to one instance",
      async () => (await instances.of("keeper")).length === 1,
      10_000,
    );
    const [kept] = await instances.of("keeper");
    // It stays: several idle timeouts later it is still the same one instance.
    for (let i = 0; i < 10; i++) {
      await sleep(300);
      const now = await instances.of("keeper");
      expect(
        now.map((x) => x.id),
        "minInstances keeps one instance",
      ).to.deep.equal([kept?.id]);
    }
    const retiredPids = answers.filter((a) => a.id !== kept?.id).map((a) => a.pid);
    await eventually(
      "retired instances' processes are gone",
      () => retiredPids.every((pid) => !alive(pid)),
      5000,
    );
    const keptPid = pidOfInstance(kept?.id ?? "");
    expect(keptPid !== undefined && alive(keptPid), "the kept instance's process runs").to.equal(
      true,
    );
    const r = await timed(url("keeper"));
    expect(r.status, r.text || r.error).to.equal(200);
    expect(json<WorkerAnswer>(r).id, "served by the kept instance").to.equal(kept?.id);
    await fizzOk(p, "fn update --name keeper --min-instances 0");
    await eventually(
      "minInstances 0: the last idle instance is retired too",
      async () => (await instances.of("keeper")).length === 0,
      10_000,
    );
  });

  it("refills a warm pool after specializations took its instances", async () => {
    await fizzOk(p, "env create --name refill --image fizz/env-node --poolsize 2");
    const before = await eventually(
      "the refill pool has 2 warm instances",
      async () => {
        const w = await instances.warm("refill");
        return w.length === 2 ? w : undefined;
      },
      10_000,
    );
    await fizzOk(
      p,
      "fn create --name drinker --env refill --code worker.js --concurrency 1 --max-instances 3",
    );
    const answers = await burst("drinker", 3, 300);
    const used = new Set(answers.map((a) => a.id));
    // The two warm instances were taken (specialized in place)...
    for (const w of before) expect(used.has(w.id), `warm ${w.id} was specialized`).to.equal(true);
    // ...and the pool is back to two fresh warm instances.
    const after = await eventually(
      "the refill pool is back to 2 warm instances",
      async () => {
        const w = await instances.warm("refill");
        return w.length === 2 ? w : undefined;
      },
      10_000,
    );
    for (const w of after) expect(used.has(w.id)).to.equal(false);
  });
});
