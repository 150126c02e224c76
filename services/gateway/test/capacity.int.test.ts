import http from "node:http";
import { expect } from "chai";
import { FizzError } from "@fizz/events";
import { waitFor } from "@fizz/testkit";
import {
  call,
  closeClients,
  functionObject,
  leaseOf,
  startHarness,
  startInstance,
  type Harness,
  type Instance,
  type Reply,
} from "./harness";

/**
 * A function at its capacity limit (the scheduler answers NO_CAPACITY): requests wait in order
 * for a slot, bounded by FIZZ_QUEUE_TIMEOUT_MS and FIZZ_QUEUE_MAX, then get 429 with Retry-After.
 */
describe("gateway at a function's capacity limit (real NATS)", function () {
  this.timeout(30_000);
  let h: Harness;
  const instances: Instance[] = [];
  /** Responses the instances hold until the test lets them go. */
  const held: http.ServerResponse[] = [];
  const answerOne = () => held.shift()?.end("done");

  /** One instance with one slot; the scheduler grants it once, then answers NO_CAPACITY. */
  const limitedFunction = async (fn: string) => {
    const i = await startInstance(`${fn}-1`, (req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write(`${req.url} `); // headers out; the end waits for the test
      held.push(res);
    });
    instances.push(i);
    let granted = false;
    h.leases.set(fn, () => {
      if (granted) throw new FizzError("NO_CAPACITY", `${fn} is at maxInstances`);
      granted = true;
      return leaseOf(i, fn, { slots: 1, concurrency: 1 });
    });
    return i;
  };

  before(async () => {
    h = await startHarness({
      functions: ["ordered", "slow", "crowded", "leaver"].map((n) => functionObject(n)),
      triggers: [],
      env: { FIZZ_QUEUE_TIMEOUT_MS: "3000", FIZZ_QUEUE_MAX: "2" },
    });
  });

  after(async () => {
    for (const res of held.splice(0)) res.end();
    closeClients();
    await h?.close();
    await Promise.all(instances.map((i) => i.close()));
  });

  const queued = async () => {
    const m = await fetch(`http://127.0.0.1:${h.gateway.opsPort}/metrics`).then((r) => r.text());
    return Number(/^fizz_gateway_queued_requests(?:\{[^}]*\})? (\d+)$/m.exec(m)?.[1] ?? NaN);
  };

  it("holds requests past the capacity and serves them in arrival order as the slot frees", async () => {
    const i = await limitedFunction("ordered");
    const first = call(h.gateway.port, "GET", "/function/ordered/a");
    await waitFor(() => held.length === 1, { what: "the first request at the instance" });
    const second = call(h.gateway.port, "GET", "/function/ordered/b");
    await waitFor(async () => (await queued()) === 1, { what: "the second request queued" });
    const third = call(h.gateway.port, "GET", "/function/ordered/c");
    await waitFor(async () => (await queued()) === 2, { what: "the third request queued" });
    expect(i.hits, "the instance never gets more than its one slot").to.equal(1);

    const done: Reply[] = [];
    for (const p of [first, second, third]) void p.then((r) => done.push(r));
    for (let n = 1; n <= 3; n++) {
      answerOne();
      await waitFor(() => done.length === n && (n === 3 || held.length === 1), {
        what: `answer ${n}`,
      });
    }
    expect(done.map((r) => [r.status, r.text])).to.deep.equal([
      [200, "/a done"],
      [200, "/b done"],
      [200, "/c done"],
    ]);
    expect(i.hits).to.equal(3);
  });

  it("answers 429 TOO_MANY_REQUESTS with Retry-After when no slot frees within the queue timeout", async () => {
    await limitedFunction("slow");
    void call(h.gateway.port, "GET", "/function/slow");
    await waitFor(() => held.length === 1, { what: "the slot taken" });
    const t0 = Date.now();
    const r = await call(h.gateway.port, "GET", "/function/slow");
    expect(Date.now() - t0).to.be.at.least(2500);
    expect(r.status).to.equal(429);
    expect(Number(r.headers["retry-after"])).to.be.at.least(1);
    expect(r.json<{ error: { code: string } }>().error.code).to.equal("TOO_MANY_REQUESTS");
    answerOne();
  });

  it("answers 429 at once when FIZZ_QUEUE_MAX requests already wait", async () => {
    await limitedFunction("crowded");
    const inFlight = [call(h.gateway.port, "GET", "/function/crowded")];
    await waitFor(() => held.length === 1, { what: "the slot taken" });
    inFlight.push(call(h.gateway.port, "GET", "/function/crowded"));
    inFlight.push(call(h.gateway.port, "GET", "/function/crowded"));
    await waitFor(async () => (await queued()) === 2, { what: "a full queue" });
    const t0 = Date.now();
    const r = await call(h.gateway.port, "GET", "/function/crowded");
    expect(Date.now() - t0).to.be.below(1000);
    expect(r.status).to.equal(429);
    expect(r.headers["retry-after"]).to.equal("1");
    expect(r.json<{ error: { code: string } }>().error.code).to.equal("TOO_MANY_REQUESTS");
    for (let n = 0; n < 3; n++) {
      await waitFor(() => held.length === 1, { what: "the next request at the instance" });
      answerOne();
    }
    for (const res of await Promise.all(inFlight)) expect(res.status).to.equal(200);
  });

  it("takes a client that disconnects while waiting out of the queue", async () => {
    const i = await limitedFunction("leaver");
    const first = call(h.gateway.port, "GET", "/function/leaver");
    await waitFor(() => held.length === 1, { what: "the slot taken" });
    const req = http.get({
      host: "127.0.0.1",
      port: h.gateway.port,
      path: "/function/leaver/gone",
      agent: false,
    });
    req.on("error", () => undefined);
    await waitFor(async () => (await queued()) === 1, { what: "the request queued" });
    req.destroy();
    await waitFor(async () => (await queued()) === 0, { what: "the request to leave the queue" });
    answerOne();
    expect((await first).status).to.equal(200);
    const after = call(h.gateway.port, "GET", "/function/leaver/next");
    await waitFor(() => held.length === 1, { what: "the next request" });
    answerOne();
    expect((await after).text).to.equal("/next done");
    expect(i.hits, "the departed request never reached the instance").to.equal(2);
  });
});
