import { spawn, type ChildProcess } from "node:child_process";
import type http from "node:http";
import path from "node:path";
import { expect } from "chai";
import { freePort, portOpen, waitFor } from "@fizz/testkit";
import type { Gateway } from "../src/index";
import {
  BUS_ENV,
  reply,
  sleepMs,
  startBusWorld,
  startReceiver,
  withBody,
  type BusWorld,
} from "./bus-harness";
import {
  call,
  closeClients,
  functionObject,
  leaseOf,
  startInstance,
  type Instance,
} from "./harness";

/**
 * At least once when things die: a gateway stopped or killed in the middle of an async call, and
 * nats-server restarted while calls are queued. The function counts its calls per X-Fizz-Call-Id:
 * the side effect may run twice (at least once), but the call completes — final status, callback
 * — once.
 */
describe("invoker failover (real NATS JetStream)", function () {
  this.timeout(90_000);
  let w: BusWorld;
  let inst: Instance;
  /** X-Fizz-Call-Id → attempts the function saw (X-Fizz-Attempt values). */
  const calls = new Map<string, string[]>();
  /** X-Fizz-Call-Id → the X-Call-Id header (the deduplication key) of each attempt. */
  const dedupeKeys = new Map<string, string[]>();
  let slowFirst = true;
  /** Delay of every attempt but a slow first one. */
  let delayMs = 20;
  let answered = 0;
  const children: ChildProcess[] = [];

  before(async () => {
    w = await startBusWorld({ functions: [functionObject("work")] });
    inst = await startInstance(
      "work-1",
      withBody((req: http.IncomingMessage, body: string, res: http.ServerResponse) => {
        const id = String(req.headers["x-fizz-call-id"]);
        const seen = calls.get(id) ?? [];
        seen.push(String(req.headers["x-fizz-attempt"]));
        calls.set(id, seen);
        dedupeKeys.set(id, [...(dedupeKeys.get(id) ?? []), String(req.headers["x-call-id"])]);
        // The first attempt of a call is slow, so a gateway can be stopped while it runs.
        const delay = slowFirst && seen.length === 1 ? 2500 : delayMs;
        setTimeout(() => {
          answered++;
          reply(res, 200, `done:${body}`);
        }, delay);
      }),
    );
    w.leases.set("work", () => leaseOf(inst, "work", { slots: 50, concurrency: 50 }));
  });
  after(async () => {
    closeClients();
    for (const c of children) c.kill("SIGKILL");
    await w?.close();
    await inst?.close();
  });

  const finalStatus = async (port: number, callId: string) => {
    let last: Record<string, unknown> = {};
    await waitFor(
      async () => {
        const r = await call(port, "GET", `/async-function/work/${callId}`);
        last = r.status === 200 ? r.json() : {};
        return last.state === "succeeded" || last.state === "failed";
      },
      { timeoutMs: 30_000, intervalMs: 100, what: `final status of ${callId}` },
    );
    return last;
  };

  it("a gateway stopped mid-call hands the call back; another gateway completes it once", async () => {
    const a = await w.startGateway({ FIZZ_GATEWAY_DRAIN_MS: "300" });
    const receiver = await startReceiver();
    try {
      const r = await call(a.port, "POST", "/async-function/work", {
        body: "stop",
        headers: { "x-callback-url": receiver.url },
      });
      const callId = r.headers["x-call-id"] as string;
      await waitFor(() => calls.get(callId)?.length === 1, { what: "the first attempt running" });
      const b = await w.startGateway();
      await a.stop(); // drain (300 ms) ends before the call does: aborted and handed back
      const done = await finalStatus(b.port, callId);
      expect(done).to.include({ state: "succeeded", status: 200, body: "done:stop", attempts: 2 });
      expect(calls.get(callId)).to.deep.equal(["1", "2"]); // redelivered, run again
      await sleepMs(500);
      expect(receiver.got).to.have.length(1); // completed once
      await b.stop();
    } finally {
      await receiver.close();
    }
  });

  it("a gateway killed mid-call (SIGKILL): another gateway runs the call within seconds, with the same X-Call-Id, and it completes once", async () => {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      ["--import", "tsx", path.resolve(import.meta.dirname, "../src/main.ts")],
      {
        env: {
          ...process.env,
          ...BUS_ENV,
          FIZZ_NATS_URL: w.nats.url,
          FIZZ_GATEWAY_PORT: String(port),
          FIZZ_INVOKER_ACK_WAIT_MS: "", // the default (5 s): what bounds the redelivery
          FIZZ_LOG_LEVEL: "warn",
        },
        stdio: ["ignore", "ignore", "inherit"],
      },
    );
    children.push(child);
    await waitFor(() => portOpen(port), { timeoutMs: 20_000, what: "the gateway process" });
    const receiver = await startReceiver();
    try {
      let callId = "";
      await waitFor(
        async () => {
          const r = await call(port, "POST", "/async-function/work", {
            body: "kill",
            headers: { "x-callback-url": receiver.url },
          });
          callId = String(r.headers["x-call-id"]);
          return r.status === 202;
        },
        { timeoutMs: 20_000, what: "the gateway process accepting async calls" },
      );
      await waitFor(() => calls.get(callId)?.length === 1, { what: "the first attempt running" });
      const b = await w.startGateway({ FIZZ_INVOKER_ACK_WAIT_MS: "" });
      child.kill("SIGKILL");
      const killedAt = Date.now();
      const done = await finalStatus(b.port, callId);
      expect(done).to.include({ state: "succeeded", status: 200, body: "done:kill", attempts: 2 });
      expect(calls.get(callId)).to.deep.equal(["1", "2"]);
      // Not handed back by the dead gateway: redelivered once its in-progress acks stopped, within
      // the ack wait (5 s) and some slack, not the 30-45 s it used to take.
      const window = Date.now() - killedAt;
      expect(window).to.be.greaterThan(1000);
      expect(window).to.be.lessThan(12_000);
      // The function can deduplicate: both runs carried the same X-Call-Id.
      expect(dedupeKeys.get(callId)).to.deep.equal([callId, callId]);
      await sleepMs(500);
      expect(receiver.got).to.have.length(1);
      await b.stop();
    } finally {
      await receiver.close();
    }
  });

  it("nats-server restarted while calls are queued and running: every call completes", async () => {
    slowFirst = false;
    delayMs = 300;
    const g: Gateway = await w.startGateway();
    answered = 0;
    const n = 30;
    const ids: string[] = [];
    const post = async (i: number) => {
      // While NATS is away the gateway answers 503; a client retries.
      await waitFor(
        async () => {
          const r = await call(g.port, "POST", "/async-function/work", { body: String(i) });
          if (r.status === 202) ids.push(String(r.headers["x-call-id"]));
          return r.status === 202;
        },
        { timeoutMs: 30_000, intervalMs: 100, what: `call ${i} accepted` },
      );
    };
    for (let i = 0; i < n / 2; i++) await post(i);
    // Calls are still queued and running when the server goes away.
    expect(answered).to.be.lessThan(n / 2);
    await w.nats.restart();
    for (let i = n / 2; i < n; i++) await post(i);
    expect(ids).to.have.length(n);
    for (const id of ids) {
      const done = await finalStatus(g.port, id);
      expect(done.state, id).to.equal("succeeded");
    }
    for (const id of ids) expect(calls.get(id)?.length, id).to.be.at.least(1);
  });
});
