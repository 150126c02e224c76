import { expect } from "chai";
import { FizzError } from "@fizz/events";
import { statusView } from "../src/bus/async-http";
import { loadConfig } from "../src/config";
import { BusLimiter } from "../src/bus/invoker/limiter";
import { CallStore, TRUNCATED_HEADER } from "../src/bus/invoker/status";
import { FunctionLeases } from "../src/front-door/leases";
import { subjectCovers } from "../src/bus/mqt/jetstream";

describe("bus limiter", () => {
  const a = new FunctionLeases("default", "a");
  const b = new FunctionLeases("default", "b");

  it("holds a function to its share and everything to the total, oldest waiter first", async () => {
    const limits = new Map([
      [a, 2],
      [b, 5],
    ]);
    const l = new BusLimiter(3, (fl) => limits.get(fl) ?? 1);
    const order: string[] = [];
    await l.acquire(a);
    await l.acquire(a);
    expect(l.freeFor(a)).to.equal(0);
    const a3 = l.acquire(a).then(() => order.push("a3"));
    await l.acquire(b); // a is at its share; b still fits the total
    expect(l.inFlight).to.equal(3);
    const b2 = l.acquire(b).then(() => order.push("b2"));
    expect(l.free()).to.equal(0);
    l.release(b); // the total has room again, a is still at its share: b2 goes past a3
    await b2;
    l.release(a);
    await a3;
    expect(order).to.deep.equal(["b2", "a3"]);
    expect(l.heldBy(a)).to.equal(2);
  });

  it("refuses past the waiting limit and rejects waiters on close", async () => {
    const l = new BusLimiter(1, () => 1);
    await l.acquire(a);
    const waiting = l.acquire(a, 1);
    try {
      await l.acquire(a, 1);
      expect.fail("accepted past the waiting limit");
    } catch (err) {
      expect((err as FizzError).code).to.equal("TOO_MANY_REQUESTS");
    }
    l.close(new FizzError("UNAVAILABLE", "stopping"));
    try {
      await waiting;
      expect.fail("waiter not rejected");
    } catch (err) {
      expect((err as FizzError).code).to.equal("UNAVAILABLE");
    }
  });

  it("tells pullers when a slot frees", async () => {
    const l = new BusLimiter(1, () => 1);
    let woken = 0;
    const off = l.onRelease(() => woken++);
    await l.acquire(a);
    l.release(a);
    off();
    await l.acquire(a);
    l.release(a);
    expect(woken).to.equal(1);
  });
});

describe("stream subjects", () => {
  it("knows when a stream subject captures a trigger subject", () => {
    expect(subjectCovers("orders.>", "orders.new")).to.equal(true);
    expect(subjectCovers("orders.>", "orders.*.x")).to.equal(true);
    expect(subjectCovers("orders.*", "orders.new")).to.equal(true);
    expect(subjectCovers("orders.*", "orders.*")).to.equal(true);
    expect(subjectCovers(">", "a.b.c")).to.equal(true);
    expect(subjectCovers("orders.new", "orders.new")).to.equal(true);
    expect(subjectCovers("orders.new", "orders.*")).to.equal(false);
    expect(subjectCovers("orders.*", "orders.>")).to.equal(false);
    expect(subjectCovers("orders.*", "orders.a.b")).to.equal(false);
    expect(subjectCovers("orders.>", "orders")).to.equal(false);
    expect(subjectCovers("orders", "orders.new")).to.equal(false);
  });
});

describe("call status", () => {
  const base = {
    callId: "c1",
    namespace: "default",
    function: "f",
    attempts: 1,
    createdAt: 1,
    updatedAt: 2,
  };

  it("shows a UTF-8 body as text and anything else as base64, flagged", () => {
    const text = statusView({
      ...base,
      state: "succeeded",
      status: 200,
      body: Buffer.from("héllo").toString("base64"),
    });
    expect(text).to.include({ body: "héllo", status: 200, state: "succeeded" });
    expect(text.bodyEncoding).to.equal(undefined);
    const binary = Buffer.from([0xff, 0x00, 0xfe]).toString("base64");
    expect(statusView({ ...base, state: "succeeded", body: binary })).to.include({
      body: binary,
      bodyEncoding: "base64",
    });
  });

  it("cuts stored bodies to the cap, within what NATS can carry, and says so", () => {
    const store = new CallStore({} as never, 10, 1024 * 1024);
    expect(store.maxBodyBytes).to.equal(10);
    const r = store.result(200, { a: "b" }, Buffer.alloc(25, 65));
    expect(Buffer.from(r.body as string, "base64")).to.have.length(10);
    expect(r.headers).to.deep.equal({ a: "b", [TRUNCATED_HEADER]: "25" });
    expect(statusView({ ...base, state: "succeeded", ...r }).truncatedFrom).to.equal(25);
    // 1 MiB configured, 1 MiB max_payload: base64 and the status around it must fit.
    expect(new CallStore({} as never, 1024 * 1024, 1024 * 1024).maxBodyBytes).to.be.lessThan(
      800 * 1024,
    );
  });

  it("stores unusual call ids under a hash (KV keys are restricted)", () => {
    expect(CallStore.key("abc-123_=")).to.equal("abc-123_=");
    expect(CallStore.key("a.b/c d")).to.match(/^h-[0-9a-f]{64}$/);
  });
});

describe("bus config", () => {
  it("has documented defaults", () => {
    expect(loadConfig({}).bus).to.deep.equal({
      maxInflight: 64,
      ackWaitMs: 5000,
      retryBaseMs: 1000,
      retryMaxMs: 60_000,
      resultMaxBytes: 1024 * 1024,
      callRetentionMs: 24 * 3600 * 1000,
      callbackAttempts: 4,
      callbackTimeoutMs: 10_000,
    });
  });

  it("names the bad variable", () => {
    for (const [name, value] of [
      ["FIZZ_INVOKER_MAX_INFLIGHT", "0"],
      ["FIZZ_INVOKER_ACK_WAIT_MS", "10"],
      ["FIZZ_CALL_RESULT_MAX_BYTES", "-1"],
      ["FIZZ_CALL_RETENTION_MS", "soon"],
    ] as const) {
      try {
        loadConfig({ [name]: value });
        expect.fail(`${name}=${value} accepted`);
      } catch (err) {
        expect((err as FizzError).field).to.equal(name);
      }
    }
  });
});
