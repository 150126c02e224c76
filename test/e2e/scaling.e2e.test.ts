import { expect } from "chai";
import { startPlatform, type Platform } from "./helpers";
import { workerJs, type WorkerAnswer } from "./functions";
import {
  dumpLogsOnFailure,
  errorCode,
  Instances,
  json,
  fizzOk,
  sleep,
  timed,
  type Timed,
} from "./probes";

/**
 * Issue 3, scale out: per-function limits set with the CLI, instances added while in-flight
 * requests exceed capacity, never more than maxInstances, a bounded wait and then 429 past that,
 * and a burst of first requests sharing specializations instead of starting one per request.
 */
describe("scaling out, end to end", function () {
  this.timeout(60_000);
  const QUEUE_TIMEOUT_MS = 1000;
  let p: Platform;
  let instances: Instances;

  before(async () => {
    p = await startPlatform({
      FIZZ_QUEUE_TIMEOUT_MS: String(QUEUE_TIMEOUT_MS),
      FIZZ_REPORT_INTERVAL_MS: "200",
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

  interface FnSpec {
    concurrency: number;
    minInstances: number;
    maxInstances: number;
    timeoutSeconds: number;
    idleTimeoutSeconds: number;
  }
  async function getSpec(name: string): Promise<FnSpec & { revision: number }> {
    const r = await fizzOk(p, `fn get --name ${name} -o json`);
    const obj = JSON.parse(r.stdout) as { metadata: { revision: number }; spec: FnSpec };
    return { ...obj.spec, revision: obj.metadata.revision };
  }

  it("sets concurrency, min/max instances, timeout and idle timeout with fn create and fn update", async () => {
    await fizzOk(
      p,
      "fn create --name limits --env node --code worker.js --concurrency 7 --min-instances 0 --max-instances 4 --timeout 2.5 --idle-timeout 30",
    );
    expect(await getSpec("limits")).to.include({
      concurrency: 7,
      minInstances: 0,
      maxInstances: 4,
      timeoutSeconds: 2.5,
      idleTimeoutSeconds: 30,
      revision: 1,
    });

    await fizzOk(
      p,
      "fn update --name limits --concurrency 3 --max-instances 5 --timeout 10 --idle-timeout 1.5",
    );
    expect(await getSpec("limits")).to.include({
      concurrency: 3,
      minInstances: 0,
      maxInstances: 5,
      timeoutSeconds: 10,
      idleTimeoutSeconds: 1.5,
      revision: 2,
    });
    // The table view shows them too.
    const table = await fizzOk(p, "fn get --name limits");
    expect(table.stdout)
      .to.match(/Concurrency:\s+3/)
      .and.to.match(/Instances:\s+min 0, max 5/);
    expect(table.stdout)
      .to.match(/Timeout:\s+10s/)
      .and.to.match(/Idle timeout:\s+1\.5s/);
    await fizzOk(p, "fn delete --name limits");
  });

  it("adds instances while in-flight requests exceed one instance's concurrency", async () => {
    await fizzOk(
      p,
      "fn create --name spread --env node --code worker.js --concurrency 1 --max-instances 3",
    );
    const SLOW_MS = 2000;
    const results = await Promise.all([1, 2, 3].map(() => timed(url("spread", `ms=${SLOW_MS}`))));
    for (const r of results) expect(r.status, r.text || r.error).to.equal(200);
    const ids = new Set(results.map((r) => json<WorkerAnswer>(r).id));
    expect(ids.size, "three concurrent calls with concurrency 1 ran on three instances").to.equal(
      3,
    );
    // Run side by side, not one after the other (that would take 3 x 1.5 s).
    const longest = Math.max(...results.map((r) => r.ms));
    expect(longest, "no call waited for another one to finish").to.be.below(2 * SLOW_MS);
    expect((await instances.of("spread")).length).to.equal(3);
  });

  it("never exceeds maxInstances; past capacity a request waits a bounded time, then gets 429 with Retry-After", async () => {
    await fizzOk(
      p,
      "fn create --name capped --env node --code worker.js --concurrency 1 --max-instances 2",
    );
    // Both instances up first, so the timing below is about waiting, not about cold starts.
    const warm = await Promise.all([1, 2].map(() => timed(url("capped", "ms=300"))));
    for (const r of warm) expect(r.status, r.text || r.error).to.equal(200);
    expect((await instances.of("capped")).length).to.equal(2);

    let maxSeen = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxSeen = Math.max(maxSeen, (await instances.of("capped")).length);
        await sleep(100);
      }
    })();
    const SLOW_MS = 4000;
    const results: Timed[] = await Promise.all(
      Array.from({ length: 10 }, () => timed(url("capped", `ms=${SLOW_MS}`))),
    );
    sampling = false;
    await sampler;

    const summary = results.map(
      (r) => `${r.status} ${Math.round(r.ms)}ms ${errorCode(r) ?? r.error ?? ""}`,
    );
    expect(maxSeen, "instances of capped at any time").to.be.at.most(2);
    expect((await instances.of("capped")).length).to.be.at.most(2);
    const okCount = results.filter((r) => r.status === 200).length;
    const busy = results.filter((r) => r.status === 429);
    expect(okCount, `2 instances x concurrency 1 serve 2 at once: ${summary.join(", ")}`).to.equal(
      2,
    );
    expect(busy.length, `the other 8 are refused: ${summary.join(", ")}`).to.equal(8);
    for (const r of busy) {
      const retryAfter = r.headers.get("retry-after");
      expect(retryAfter, "429 carries Retry-After").to.match(/^\d+$/);
      expect(Number(retryAfter)).to.be.at.least(1);
      expect(errorCode(r), `429 body: ${r.text}`).to.be.oneOf([
        "TOO_MANY_REQUESTS",
        "INSTANCE_BUSY",
      ]);
      // A bounded wait for a slot: about the queue timeout, and well before a slot frees up.
      expect(r.ms, `429 after waiting for a slot (${summary.join(", ")})`).to.be.at.least(
        QUEUE_TIMEOUT_MS * 0.8,
      );
      expect(r.ms, "the wait is bounded by the queue timeout").to.be.below(QUEUE_TIMEOUT_MS + 2000);
    }
  });

  it("a request past capacity waits for a slot, and is served when one frees within the wait", async () => {
    await fizzOk(
      p,
      "fn create --name queued --env node --code worker.js --concurrency 1 --max-instances 1",
    );
    const warm = await timed(url("queued"));
    expect(warm.status, warm.text || warm.error).to.equal(200);
    const busy = timed(url("queued", "ms=500"));
    await sleep(100);
    const waiting = await timed(url("queued"));
    const first = await busy;
    expect(first.status, first.text || first.error).to.equal(200);
    expect(waiting.status, waiting.text || waiting.error).to.equal(200);
    expect(waiting.ms, "it waited for the slot").to.be.at.least(300);
    expect(json<WorkerAnswer>(waiting).id).to.equal(json<WorkerAnswer>(first).id);
    expect((await instances.of("queued")).length).to.equal(1);
  });

  it("single flight: 40 concurrent first requests with concurrency 10 start at most 4 instances, and all succeed", async () => {
    await fizzOk(
      p,
      "fn create --name burst --env node --code worker.js --concurrency 10 --max-instances 10",
    );
    const N = 40;
    const CONCURRENCY = 10;
    let maxSeen = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxSeen = Math.max(maxSeen, (await instances.of("burst")).length);
        await sleep(100);
      }
    })();
    const results = await Promise.all(
      Array.from({ length: N }, () => timed(url("burst", "ms=1000"))),
    );
    sampling = false;
    await sampler;

    const failed = results.filter((r) => r.status !== 200);
    expect(
      failed.map((r) => `${r.status} ${r.text || r.error}`),
      "every request succeeds",
    ).to.deep.equal([]);
    const ids = new Set(results.map((r) => json<WorkerAnswer>(r).id));
    const limit = Math.ceil(N / CONCURRENCY);
    console.log(`      ${N} requests served by ${ids.size} instance(s)`);
    expect(ids.size, "instances that served the burst").to.be.at.most(limit);
    const listed = (await instances.of("burst")).length;
    expect(Math.max(maxSeen, listed), "instances specialized for the burst").to.be.at.most(limit);
  });
});
