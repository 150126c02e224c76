// The runtime contract (docs/runtime-contract.md), the instance's limits and shutdown, shared by
// the full suite and the core one (custom environments): concurrency in flight plus an equal
// queue then 429, a call whose client went away at its deadline (the gateway enforces a
// function's timeout by aborting the proxied request), SIGTERM drain, and stdin closed by the
// process backend.
import http from "node:http";
import { expect } from "chai";
import { type HttpResult, type Runtime, request, sleep } from "./harness.js";
import type { StartOptions } from "./harness.js";
import { ME } from "./contract-lifecycle.js";

/** A function that waits a while, then answers the text `answer`. */
export interface SlowFunction {
  /** Specializes `rt` with it; calls on `path(ms)` wait `ms` milliseconds. */
  deploy(rt: Runtime, ms: number, options?: { concurrency?: number }): Promise<HttpResult>;
  path(ms: number): string;
  answer: string;
}

type Start = (env?: Record<string, string>, options?: StartOptions) => Promise<Runtime>;

/** A call the client gives up on after `afterMs`, as the gateway does at a function's timeout. */
function abandonedCall(url: string, path: string, afterMs: number): Promise<void> {
  return new Promise((resolve) => {
    const req = http.request(new URL(path, url), { headers: ME, agent: false });
    req.on("error", () => resolve()); // the abort itself
    req.on("response", (res) => {
      res.resume();
      res.on("end", () => resolve());
      res.on("error", () => resolve());
    });
    req.end();
    setTimeout(() => {
      req.destroy();
      resolve();
    }, afterMs);
  });
}

export function describeLimits(start: Start, slow: SlowFunction): void {
  describe("with concurrency 1 and a slow function", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      const res = await slow.deploy(rt, 400, { concurrency: 1 });
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("runs one call, queues one, and answers 429 INSTANCE_BUSY with Retry-After to the rest", async () => {
      const call = () => request(rt.url, { path: slow.path(400), headers: ME });
      const results = await Promise.all([1, 2, 3, 4].map(call));
      const statuses = results.map((r) => r.status).sort();
      expect(statuses).to.deep.equal([200, 200, 429, 429]);
      for (const busy of results.filter((r) => r.status === 429)) {
        expect(busy.headers["retry-after"]).to.equal("1");
        expect(busy.error().code).to.equal("INSTANCE_BUSY");
      }
      expect((await call()).status).to.equal(200);
    });
  });

  describe("when the client gives up on a call at its timeout", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      const res = await slow.deploy(rt, 600, { concurrency: 1 });
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("releases the call's slot when the function returns and serves the next call", async () => {
      await abandonedCall(rt.url, slow.path(600), 150);
      // Concurrency 1: the abandoned function still holds the slot, so the next call waits in
      // the queue until it returns. Had the slot leaked, that call would wait forever (or be
      // refused with 429), and so would the two after it (one running, one queued).
      const call = () => request(rt.url, { path: slow.path(50), headers: ME });
      const next = [await call(), ...(await Promise.all([call(), call()]))];
      for (const res of next) {
        expect(res.status, res.text).to.equal(200);
        expect(res.text).to.equal(slow.answer);
      }
      expect((await request(rt.url, { path: "/healthz" })).object().state).to.equal("specialized");
    });
  });

  describe("on SIGTERM", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      expect((await slow.deploy(rt, 400)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("finishes the call in flight, stops accepting, and exits 0", async () => {
      const inFlight = request(rt.url, { path: slow.path(400), headers: ME });
      await sleep(100);
      rt.proc.kill("SIGTERM");
      const res = await inFlight;
      expect(res.status).to.equal(200);
      expect(res.text).to.equal(slow.answer);
      expect(await rt.exited).to.equal(0);
      let refused = false;
      await request(rt.url, { path: "/healthz" }).catch(() => (refused = true));
      expect(refused).to.equal(true);
    });
  });

  describe("under the process backend (FIZZ_PARENT_STDIN=1)", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start({ FIZZ_PARENT_STDIN: "1" }, { stdinPipe: true });
      expect((await slow.deploy(rt, 300)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("finishes the call in flight and exits 0 when its parent closes stdin", async () => {
      const inFlight = request(rt.url, { path: slow.path(300), headers: ME });
      await sleep(100);
      const stdin = rt.proc.stdin;
      if (!stdin) throw new Error("the runtime was started without a stdin pipe");
      stdin.end();
      expect((await inFlight).text).to.equal(slow.answer);
      expect(await rt.exited).to.equal(0);
    });
  });
}
