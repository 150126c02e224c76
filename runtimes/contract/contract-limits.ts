// The runtime contract (docs/runtime-contract.md), the instance's limits and shutdown, shared by
// the full suite and the core one (custom environments): concurrency in flight plus an equal
// queue then 429, a call whose client went away at its deadline (the gateway enforces a
// function's timeout by aborting the proxied request: contract-abandoned-call.ts), SIGTERM
// drain, and stdin closed by the process backend.
import http from "node:http";
import { expect } from "chai";
import { type HttpResult, type Runtime, request, sleep } from "./harness.js";
import type { StartOptions } from "./harness.js";
import { type DeployWith, describeAbandonedCall } from "./contract-abandoned-call.js";
import { ME } from "./contract-lifecycle.js";

/** A function that waits a while, then answers the text `answer`. */
export interface SlowFunction {
  /** Specializes `rt` with it; calls on `path(ms)` wait `ms` milliseconds. */
  deploy(rt: Runtime, ms: number, options?: { concurrency?: number }): Promise<HttpResult>;
  path(ms: number): string;
  answer: string;
}

/** How long the slow calls of these tests take: far longer than a loaded CI needs to deliver them. */
const BUSY_MS = 1500;

/** How long the running call of the queue check takes: room for the next one to be queued. */
const QUEUED_MS = 200;

/** A call's answer (status 0 when its connection failed), and when it came. */
type Outcome = Pick<HttpResult, "status" | "text"> & { at: number };

/**
 * Sends slow calls (concurrency 1, one queue place) until one is refused with 429: the runtime
 * then holds two calls, one of them in flight. A fixed sleep would not do: on a loaded machine the
 * first call can still be in the listener's backlog, and a shutdown then resets it. Resolves with
 * the held calls' outcomes, to await after the shutdown begins.
 */
async function holdCalls(rt: Runtime, slow: SlowFunction): Promise<Array<Promise<Outcome>>> {
  const send = (): Promise<Outcome> =>
    request(rt.url, { path: slow.path(BUSY_MS), headers: ME }).then(
      ({ status, text }) => ({ status, text, at: Date.now() }),
      () => ({ status: 0, text: "", at: Date.now() }),
    );
  const held: Array<Promise<Outcome>> = [];
  const deadline = Date.now() + BUSY_MS;
  held.push(send());
  for (;;) {
    if (Date.now() > deadline) throw new Error("the runtime never held a call in flight");
    await sleep(20);
    const probe = send();
    // A probe it queues instead is held too; one it refuses answers at once.
    const busy = await Promise.race([probe, sleep(50).then(() => undefined)]);
    if (busy?.status === 429) return held;
    held.push(probe);
  }
}

/** The call in flight when the shutdown began at `since` finished after it; a queued one may be
 * refused. */
function expectOneFinished(outcomes: Outcome[], answer: string, since: number): void {
  const finished = outcomes.filter((o) => o.status === 200 && o.text === answer && o.at >= since);
  expect(finished.length, JSON.stringify(outcomes)).to.be.at.least(1);
}

type Start = (env?: Record<string, string>, options?: StartOptions) => Promise<Runtime>;

/** `logs`: deploys the call markers' function or the twice printer, when the runtime has one (the
 * abandoned call's check then sees whether its function still runs). */
export function describeLimits(start: Start, slow: SlowFunction, logs?: DeployWith): void {
  describe("with concurrency 1 and a slow function", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      // Long enough that the four calls below reach it while the first still runs, however
      // loaded the machine.
      const res = await slow.deploy(rt, BUSY_MS, { concurrency: 1 });
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("runs one call, queues one, and answers 429 INSTANCE_BUSY with Retry-After to the rest", async () => {
      const call = () => request(rt.url, { path: slow.path(BUSY_MS), headers: ME });
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

  describeAbandonedCall(
    start,
    { deploy: (rt, options) => slow.deploy(rt, 600, options), path: slow.path(600) },
    logs,
  );

  describe("with concurrency 1 and calls sent back to back", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      const res = await slow.deploy(rt, 20, { concurrency: 1 });
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("frees the slot by the time the answer arrives: calls sent at once after it on other open connections are served or queued, never refused", async () => {
      // The gateway keeps connections to an instance open and sends the next call the moment it
      // has an answer. With concurrency 1 and one queue place, two calls sent then must both be
      // served; a slot freed only later (a runtime that counts it free when a worker is reaped)
      // refuses the second with 429. Each agent holds one connection, opened before the loop.
      const agents = [0, 1, 2].map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
      const [a, b, c] = agents as [http.Agent, http.Agent, http.Agent];
      const call = (agent: http.Agent) =>
        request(rt.url, { path: slow.path(20), headers: ME, agent });
      try {
        await Promise.all([call(a), call(b), call(c)].map((p) => p.catch(() => undefined)));
        for (let i = 0; i < 10; i++) {
          const first = await call(a);
          expect(first.status, first.text).to.equal(200);
          const next = await Promise.all([call(b), call(c)]);
          expect(
            next.map((r) => r.status),
            `round ${i}: ${next.map((r) => r.text).join(" | ")}`,
          ).to.deep.equal([200, 200]);
        }
      } finally {
        for (const agent of agents) agent.destroy();
      }
    });
  });

  describe("with concurrency 1, a call running and one queued", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      const res = await slow.deploy(rt, QUEUED_MS, { concurrency: 1 });
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("has the queue place free for a call sent the moment the running call's answer arrives", async () => {
      // The queued call must take the freed slot and leave the queue in one step: a gate that
      // takes the slot, then (a lock later) stops counting the call as queued, refuses a call
      // arriving between the two with 429, though one call runs and none waits. The gateway sends
      // one exactly then. A race: it fails reliably only with a delay injected between the two.
      const agents = [0, 1, 2].map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
      const [a, b, c] = agents as [http.Agent, http.Agent, http.Agent];
      const call = (agent: http.Agent) =>
        request(rt.url, { path: slow.path(QUEUED_MS), headers: ME, agent });
      try {
        await Promise.all(agents.map((agent) => request(rt.url, { path: "/healthz", agent })));
        for (let i = 0; i < 5; i++) {
          const running = call(a);
          await sleep(60); // running by then (on a loaded machine maybe not: the round then passes)
          const queued = call(b);
          const first = await running;
          expect(first.status, first.text).to.equal(200);
          const next = await call(c);
          const statuses = [(await queued).status, next.status];
          expect(statuses, `round ${i}: ${next.text}`).to.deep.equal([200, 200]);
        }
      } finally {
        for (const agent of agents) agent.destroy();
      }
    });
  });

  describe("on SIGTERM", () => {
    let rt: Runtime;
    before(async () => {
      rt = await start();
      expect((await slow.deploy(rt, BUSY_MS, { concurrency: 1 })).status).to.equal(200);
    });
    after(() => rt.kill());

    it("finishes the call in flight, stops accepting, and exits 0", async () => {
      const held = await holdCalls(rt, slow);
      const since = Date.now();
      rt.proc.kill("SIGTERM");
      expectOneFinished(await Promise.all(held), slow.answer, since);
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
      expect((await slow.deploy(rt, BUSY_MS, { concurrency: 1 })).status).to.equal(200);
    });
    after(() => rt.kill());

    it("finishes the call in flight and exits 0 when its parent closes stdin", async () => {
      const held = await holdCalls(rt, slow);
      const stdin = rt.proc.stdin;
      if (!stdin) throw new Error("the runtime was started without a stdin pipe");
      const since = Date.now();
      stdin.end();
      expectOneFinished(await Promise.all(held), slow.answer, since);
      expect(await rt.exited).to.equal(0);
    });
  });
}
