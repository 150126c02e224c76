import { expect } from "chai";
import { startPlatform, type Platform } from "./helpers";
import { workerJs, type WorkerAnswer } from "./functions";
import {
  alive,
  dumpLogsOnFailure,
  errorCode,
  eventually,
  Instances,
  json,
  fizzOk,
  pidOfInstance,
  timed,
} from "./probes";

/**
 * Issue 3, failures: an instance killed (SIGKILL) under load, and a function that hangs past its
 * timeout. Users rely on a clear status for what was in flight, on the broken instance never
 * getting traffic again, and on the next request working.
 */
describe("instance failures, end to end", function () {
  this.timeout(60_000);
  let p: Platform;
  let instances: Instances;

  before(async () => {
    p = await startPlatform({
      FIZZ_REPORT_INTERVAL_MS: "200",
      FIZZ_DRAIN_MS: "500",
      FIZZ_KILL_GRACE_MS: "500",
    });
    instances = await Instances.connect(p);
    await p.file("worker.js", workerJs());
    await p.file(
      "hang.py",
      [
        "import os, time",
        "def main(context):",
        "    if context.query.get('hang'):",
        "        time.sleep(3600)",
        "    return {'id': os.environ.get('FIZZ_INSTANCE_ID'), 'pid': os.getpid()}",
        "",
      ].join("\n"),
    );
    await fizzOk(p, "env create --name node --image fizz/env-node --poolsize 2");
    await fizzOk(p, "env create --name python --image fizz/env-python --poolsize 1");
  });
  after(async () => {
    await instances?.close();
    await p?.stop();
  });
  afterEach(dumpLogsOnFailure(() => p, 100));

  const url = (fn: string, query = "") =>
    `${p.gatewayUrl}/function/${fn}${query ? `?${query}` : ""}`;

  describe("an instance killed with SIGKILL under load", () => {
    let victim: WorkerAnswer;
    let inFlight: { method: string; r: Awaited<ReturnType<typeof timed>> }[] = [];

    before(async () => {
      await fizzOk(
        p,
        "fn create --name victim --env node --code worker.js --concurrency 10 --max-instances 2",
      );
      const first = await timed(url("victim"));
      expect(first.status, first.text || first.error).to.equal(200);
      victim = json<WorkerAnswer>(first);
      expect(pidOfInstance(victim.id), "the instance's pid found through /proc").to.equal(
        victim.pid,
      );

      // Three POSTs and three GETs in flight on that one instance (first fit packs them there).
      const calls = [
        ...[1, 2, 3].map(() => ({
          method: "POST",
          p: timed(url("victim", "ms=5000"), { method: "POST", body: "payload" }),
        })),
        ...[1, 2, 3].map(() => ({ method: "GET", p: timed(url("victim", "ms=5000")) })),
      ];
      await eventually(
        "6 calls running in the victim instance",
        async () => {
          const r = json<{ id: string; inflight: number }>(await timed(url("victim", "inflight")));
          return r.id === victim.id && r.inflight === 6;
        },
        10_000,
      );
      process.kill(victim.pid, "SIGKILL");
      inFlight = await Promise.all(calls.map(async (c) => ({ method: c.method, r: await c.p })));
      console.log(
        `      in flight when killed: ${inFlight.map((c) => `${c.method} ${c.r.status}`).join(", ")}`,
      );
    });

    it("answers 502 INSTANCE_FAILED to the POSTs that were in flight", () => {
      const posts = inFlight.filter((c) => c.method === "POST");
      for (const { r } of posts) {
        expect(r.status, r.text || r.error).to.equal(502);
        expect(errorCode(r)).to.equal("INSTANCE_FAILED");
      }
    });

    it("answers the GETs that were in flight with 502, or with 200 after one retry elsewhere", () => {
      for (const { r } of inFlight.filter((c) => c.method === "GET")) {
        expect(r.status, r.text || r.error).to.be.oneOf([200, 502]);
        if (r.status === 200)
          expect(json<WorkerAnswer>(r).id, "retried on another instance").to.not.equal(victim.id);
        else expect(errorCode(r)).to.equal("INSTANCE_FAILED");
      }
    });

    it("serves the next request, and never leases the dead instance again", async () => {
      const next = await timed(url("victim"));
      expect(next.status, next.text || next.error).to.equal(200);
      expect(json<WorkerAnswer>(next).id).to.not.equal(victim.id);
      const more = await Promise.all(Array.from({ length: 30 }, () => timed(url("victim"))));
      for (const r of more) {
        expect(r.status, r.text || r.error).to.equal(200);
        expect(json<WorkerAnswer>(r).id).to.not.equal(victim.id);
      }
      await eventually(
        "the dead instance is gone from the poolkeeper's list",
        async () => !(await instances.list()).some((i) => i.id === victim.id),
        5000,
      );
    });
  });

  describe("a Node function that hangs past its timeout", () => {
    let hung: WorkerAnswer;
    let hangResult: Awaited<ReturnType<typeof timed>>;

    before(async () => {
      await fizzOk(
        p,
        "fn create --name hang --env node --code worker.js --concurrency 5 --max-instances 2 --timeout 1",
      );
      const first = await timed(url("hang"));
      expect(first.status, first.text || first.error).to.equal(200);
      hung = json<WorkerAnswer>(first);
      hangResult = await timed(url("hang", "hang=1"));
    });

    it("answers 504 TIMEOUT at the function's timeout", () => {
      expect(hangResult.status, hangResult.text || hangResult.error).to.equal(504);
      expect(errorCode(hangResult)).to.equal("TIMEOUT");
      expect(hangResult.ms).to.be.within(900, 2500);
    });

    it("kills the hung instance without waiting for more traffic", async () => {
      await eventually(
        `the hung instance's process ${hung.pid} ends`,
        () => !alive(hung.pid),
        8000,
      );
      await eventually(
        "the hung instance is gone from the poolkeeper's list",
        async () => !(await instances.list()).some((i) => i.id === hung.id),
        3000,
      );
    });

    it("serves the next request on a fresh instance, and the hung one is gone", async () => {
      const next = await timed(url("hang"));
      expect(next.status, next.text || next.error).to.equal(200);
      expect(json<WorkerAnswer>(next).id, "a fresh instance").to.not.equal(hung.id);
      await eventually(
        `the hung instance's process ${hung.pid} ends`,
        () => !alive(hung.pid),
        8000,
      );
      expect((await instances.list()).some((i) => i.id === hung.id)).to.equal(false);
    });
  });

  describe("a Python function that blocks past its timeout", () => {
    it("answers 504 at the timeout, kills the instance and serves the next request on a fresh one", async () => {
      await fizzOk(
        p,
        "fn create --name pyhang --env python --code hang.py --concurrency 2 --max-instances 2 --timeout 1",
      );
      const first = await timed(url("pyhang"));
      expect(first.status, first.text || first.error).to.equal(200);
      const a = json<{ id: string; pid: number }>(first);
      const h = await timed(url("pyhang", "hang=1"));
      expect(h.status, h.text || h.error).to.equal(504);
      expect(h.ms).to.be.within(900, 2500);
      const next = await timed(url("pyhang"));
      expect(next.status, next.text || next.error).to.equal(200);
      expect(json<{ id: string }>(next).id).to.not.equal(a.id);
      await eventually(`the blocked instance's process ${a.pid} ends`, () => !alive(a.pid), 8000);
    });
  });
});
