import { expect } from "chai";
import { Codecs, type DeadLetter } from "@fizz/events";
import { publishInvocation, type Subscription } from "@fizz/kit";
import { jetstream } from "@nats-io/jetstream";
import { waitFor } from "@fizz/testkit";
import type { Gateway } from "../src/index";
import {
  reply,
  sleepMs,
  startBusWorld,
  startReceiver,
  withBody,
  type BusWorld,
  type Seen,
} from "./bus-harness";
import {
  call,
  closeClients,
  functionObject,
  leaseOf,
  startInstance,
  subj,
  type Instance,
} from "./harness";

/**
 * Async invocation through the gateway (OpenFaaS style `/async-function/`), the invoker consuming
 * FIZZ_INVOCATIONS, call status, callbacks, retries and dead letters — on a real nats-server with
 * JetStream, the test playing registry and scheduler, runtime-contract instances as functions.
 */
describe("async invocation (real NATS JetStream)", function () {
  this.timeout(60_000);
  let w: BusWorld;
  let g: Gateway;
  const instances: Instance[] = [];
  const deadLetters: DeadLetter[] = [];
  let deadSub: Subscription;
  /** Calls each function saw, in order. */
  const seen = new Map<string, Seen[]>();
  const record = (fn: string, s: Seen) => {
    const list = seen.get(fn) ?? [];
    list.push(s);
    seen.set(fn, list);
  };
  /** An instance for `fn` whose answer `respond` decides (after recording the call). */
  const fnInstance = async (
    fn: string,
    respond: (s: Seen, res: import("node:http").ServerResponse) => void,
    over: Parameters<typeof leaseOf>[2] = {},
  ) => {
    const inst = await startInstance(
      `${fn}-1`,
      withBody((req, body, res) => {
        const s: Seen = {
          method: req.method ?? "",
          url: req.url ?? "",
          headers: req.headers,
          body,
        };
        record(fn, s);
        respond(s, res);
      }),
    );
    instances.push(inst);
    w.leases.set(fn, () => leaseOf(inst, fn, over));
    return inst;
  };
  const status = async (fn: string, callId: string) => {
    const r = await call(g.port, "GET", `/async-function/${fn}/${callId}`);
    return { code: r.status, body: r.json<Record<string, unknown>>() };
  };
  const finalStatus = async (fn: string, callId: string) => {
    let last: Record<string, unknown> = {};
    await waitFor(
      async () => {
        last = (await status(fn, callId)).body;
        return last.state === "succeeded" || last.state === "failed";
      },
      { timeoutMs: 20_000, intervalMs: 50, what: `final status of ${callId}` },
    );
    return last;
  };

  before(async () => {
    w = await startBusWorld({
      functions: ["hello", "flaky", "broken", "teapot", "stuck"].map((n) => functionObject(n)),
    });
    deadSub = w.nc.subscribe(`${subj.prefix}.dead.>`, {
      callback: (_err, msg) => {
        deadLetters.push(Codecs.dead.decode(msg.data).data);
      },
    });
    g = await w.startGateway();
  });
  after(async () => {
    closeClients();
    deadSub?.unsubscribe();
    await w?.close();
    await Promise.all(instances.map((i) => i.close()));
  });

  it("answers 404 NO_ROUTE for an unknown function, and 404 for an unknown call id", async () => {
    const r = await call(g.port, "POST", "/async-function/nope", { body: "x" });
    expect(r.status).to.equal(404);
    expect(r.json<{ error: { code: string } }>().error.code).to.equal("NO_ROUTE");
    const s = await call(g.port, "GET", "/async-function/hello/no-such-call");
    expect(s.status).to.equal(404);
    expect(s.json<{ error: { code: string } }>().error.code).to.equal("NOT_FOUND");
  });

  it("accepts with 202 and X-Call-Id, runs the call, and reports queued/running, then succeeded with the result", async () => {
    await fnInstance("hello", (s, res) =>
      setTimeout(() => reply(res, 200, `hello ${s.body}`, { "x-answer": "42" }), 300),
    );
    const r = await call(g.port, "POST", "/async-function/hello/some/path?q=1", {
      body: "world",
      headers: { "content-type": "text/plain", "x-custom": "yes", "x-fizz-instance": "forged" },
    });
    expect(r.status).to.equal(202);
    const callId = r.headers["x-call-id"] as string;
    expect(callId).to.match(/^[0-9a-f-]{36}$/);
    expect(r.json()).to.deep.equal({ callId });
    const first = await status("hello", callId);
    expect(first.code).to.equal(200);
    expect(["queued", "running"]).to.include(first.body.state);
    const done = await finalStatus("hello", callId);
    expect(done).to.include({
      callId,
      state: "succeeded",
      status: 200,
      body: "hello world",
      attempts: 1,
    });
    expect((done.headers as Record<string, string>)["x-answer"]).to.equal("42");
    expect(done.createdAt).to.be.a("number");
    const sawIt = seen.get("hello")?.[0];
    expect(sawIt).to.include({ method: "POST", url: "/some/path?q=1", body: "world" });
    expect(sawIt?.headers).to.include({
      "x-fizz-call-id": callId,
      "x-call-id": callId,
      "x-fizz-function-name": "hello",
      "x-custom": "yes",
      "content-type": "text/plain",
      "x-fizz-instance": "hello-1",
    });
  });

  it("POSTs the result to X-Callback-Url with the OpenFaaS headers", async () => {
    const receiver = await startReceiver();
    try {
      const r = await call(g.port, "POST", "/async-function/hello", {
        body: "callback",
        headers: { "x-callback-url": receiver.url },
      });
      expect(r.status).to.equal(202);
      const callId = r.headers["x-call-id"] as string;
      await waitFor(() => receiver.got.length > 0, { timeoutMs: 10_000, what: "the callback" });
      const cb = receiver.got[0] as Seen;
      expect(cb.method).to.equal("POST");
      expect(cb.body).to.equal("hello callback");
      expect(cb.headers).to.include({
        "x-call-id": callId,
        "x-function-status": "200",
        "x-function-name": "hello",
        "content-type": "text/plain",
      });
      expect(Number(cb.headers["x-duration-seconds"])).to.be.within(0.2, 10);
      // The callback URL is the gateway's business, not the function's.
      const fnSaw = seen.get("hello")?.find((s) => s.headers["x-fizz-call-id"] === callId);
      expect(fnSaw?.headers["x-callback-url"]).to.equal(undefined);
    } finally {
      await receiver.close();
    }
  });

  it("retries a failing callback without running the function again", async () => {
    let answers = 0;
    const receiver = await startReceiver(() => (++answers < 3 ? 503 : 200));
    try {
      const before = seen.get("hello")?.length ?? 0;
      const r = await call(g.port, "POST", "/async-function/hello", {
        body: "again",
        headers: { "x-callback-url": receiver.url },
      });
      await waitFor(() => receiver.got.length === 3, { timeoutMs: 10_000, what: "3 callbacks" });
      expect(receiver.got.map((c) => c.body)).to.deep.equal(Array(3).fill("hello again"));
      const done = await finalStatus("hello", r.headers["x-call-id"] as string);
      expect(done).to.include({ state: "succeeded", attempts: 1 });
      expect(seen.get("hello")?.length).to.equal(before + 1);
    } finally {
      await receiver.close();
    }
  });

  it("treats a 4xx as the function's answer: not retried, status failed with it", async () => {
    await fnInstance("teapot", (_s, res) => reply(res, 418, "short and stout"));
    const r = await call(g.port, "POST", "/async-function/teapot", { body: "" });
    const done = await finalStatus("teapot", r.headers["x-call-id"] as string);
    expect(done).to.include({ state: "failed", status: 418, body: "short and stout", attempts: 1 });
    expect(seen.get("teapot")).to.have.length(1);
  });

  it("retries a failing call with back-off and completes it once it succeeds", async () => {
    let n = 0;
    await fnInstance("flaky", (_s, res) =>
      ++n < 3 ? reply(res, 500, "not yet") : reply(res, 200, "finally"),
    );
    const r = await call(g.port, "POST", "/async-function/flaky", { body: "" });
    const callId = r.headers["x-call-id"] as string;
    const done = await finalStatus("flaky", callId);
    expect(done).to.include({ state: "succeeded", status: 200, body: "finally", attempts: 3 });
    expect(seen.get("flaky")?.map((s) => s.headers["x-fizz-attempt"])).to.deep.equal([
      "1",
      "2",
      "3",
    ]);
  });

  it("dead-letters a call that keeps failing after maxRetries, reports failed and calls back with the status", async () => {
    await fnInstance("broken", (_s, res) => reply(res, 500, "boom"));
    const receiver = await startReceiver();
    try {
      const r = await call(g.port, "POST", "/async-function/broken", {
        body: "payload",
        headers: { "x-callback-url": receiver.url },
      });
      const callId = r.headers["x-call-id"] as string;
      const done = await finalStatus("broken", callId);
      expect(done).to.include({ state: "failed", status: 500, body: "boom", attempts: 4 });
      expect((done.error as { code: string }).code).to.equal("FUNCTION_ERROR");
      expect(seen.get("broken")).to.have.length(4); // maxRetries 3 → 4 attempts
      await waitFor(() => deadLetters.some((d) => d.invocation.callId === callId), {
        timeoutMs: 5000,
      });
      const dl = deadLetters.find((d) => d.invocation.callId === callId) as DeadLetter;
      expect(dl).to.deep.include({ attempts: 4, status: 500 });
      expect(dl.error.code).to.equal("FUNCTION_ERROR");
      expect(Buffer.from(dl.invocation.body, "base64").toString()).to.equal("payload");
      await waitFor(() => receiver.got.length > 0, { timeoutMs: 5000, what: "the callback" });
      expect(receiver.got[0]?.headers["x-function-status"]).to.equal("500");
      await sleepMs(300);
      expect(receiver.got).to.have.length(1);
    } finally {
      await receiver.close();
    }
  });

  it("dead-letters an invocation of an unknown function at once (NOT_FOUND), without trying it", async () => {
    const js = jetstream(w.nc);
    const callId = "timer-for-a-deleted-function";
    await publishInvocation(
      js,
      subj,
      {
        callId,
        namespace: "default",
        function: "deleted",
        source: "timer",
        method: "POST",
        path: "/",
        headers: {},
        body: "",
        maxRetries: 3,
        createdAt: Date.now(),
      },
      "test",
    );
    await waitFor(() => deadLetters.some((d) => d.invocation.callId === callId), {
      timeoutMs: 10_000,
    });
    const dl = deadLetters.find((d) => d.invocation.callId === callId) as DeadLetter;
    expect(dl.error.code).to.equal("NOT_FOUND");
    expect(dl.attempts).to.equal(1);
  });

  it("fails a call at the function's timeout, not up to a second after it", async () => {
    let receivedAt = 0;
    await fnInstance("stuck", () => (receivedAt = Date.now()), { timeoutMs: 1500 });
    const js = jetstream(w.nc);
    const callId = `stuck-${Date.now()}`;
    await publishInvocation(
      js,
      subj,
      {
        callId,
        namespace: "default",
        function: "stuck",
        source: "async",
        method: "POST",
        path: "/",
        headers: {},
        body: "",
        maxRetries: 0,
        createdAt: Date.now(),
      },
      "test",
    );
    const done = await finalStatus("stuck", callId);
    expect(done).to.include({ state: "failed" });
    expect((done.error as { code: string }).code).to.equal("TIMEOUT");
    // Timed out, then the dead letter and the status written: well within timeout + 500 ms.
    expect((done.updatedAt as number) - receivedAt).to.be.within(1400, 2000);
  });
});
