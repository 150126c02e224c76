import { expect } from "chai";
import type { NatsConnection } from "@nats-io/transport-node";
import type { JsMsg } from "@nats-io/jetstream";
import { Registry } from "prom-client";
import { Codecs, type Invocation } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { loadBusConfig } from "../src/bus/bus-config";
import { BusMetrics } from "../src/bus/bus-metrics";
import { InvocationConsumer } from "../src/bus/invoker/consumer";
import { BusLimiter } from "../src/bus/invoker/limiter";
import { functionLookup } from "../src/bus/start-bus";
import { fakeRouteStore, fn, subj, trigger } from "./routes-fakes";

/**
 * The route table is served (the gateway ready, the bus side trusting "no such function") only
 * once BOTH functions and HTTP triggers are listed, whichever list lands first and whatever change
 * events arrive in between. NATS is played by a fake (routes-fakes.ts): the test answers each
 * `registry.list` when it chooses and publishes `registry.changed.*` events itself.
 */
function world() {
  const { nats, leases, store } = fakeRouteStore();
  const abort = new AbortController();
  let started = false;
  const loading = store.start(abort.signal).then(() => (started = true));
  return {
    nats,
    store,
    leases,
    lookup: functionLookup(store, leases),
    /** Whether `start` (what `gateway.ready` is) has resolved. */
    started: () => started,
    loading,
    stop: () => {
      abort.abort();
      store.stop();
    },
  };
}

/** What the invoker did with one delivery of an invocation of `name`. */
async function deliver(w: ReturnType<typeof world>, name: string) {
  const settled: string[] = [];
  const deadLetters: string[] = [];
  const statuses: unknown[] = [];
  const consumer = new InvocationConsumer({
    nc: {} as NatsConnection,
    js: {
      publish: (subject: string) => {
        deadLetters.push(subject);
        return Promise.resolve({});
      },
    } as never,
    jsm: {} as never,
    subjects: subj,
    id: "gateway-test",
    leases: w.leases,
    lookup: w.lookup,
    limiter: new BusLimiter(8, () => 4),
    store: {
      maxBodyBytes: 1024,
      get: () => Promise.resolve(undefined),
      put: (s: unknown) => {
        statuses.push(s);
        return Promise.resolve();
      },
      result: () => ({}),
    } as never,
    callbacks: {} as never,
    config: loadBusConfig({}),
    maxResponseBytes: 1024,
    metrics: new BusMetrics(
      new Registry(),
      () => 0,
      () => 0,
    ),
    logger: silentLogger(),
  });
  const inv: Invocation = {
    callId: "call-1",
    namespace: "default",
    function: name,
    source: "async",
    method: "POST",
    path: "/",
    headers: {},
    body: "",
    maxRetries: 3,
    createdAt: 0,
  };
  const m = {
    data: Codecs.invoke.encode(inv, "async-test"),
    seq: 1,
    info: { deliveryCount: 1 },
    ack: () => settled.push("ack"),
    nak: () => settled.push("nak"),
    term: () => settled.push("term"),
    working: () => undefined,
  } as unknown as JsMsg;
  await (consumer as unknown as { process(m: JsMsg): Promise<void> }).process(m);
  return { settled, deadLetters, statuses };
}

describe("route table readiness: both kinds listed", () => {
  it("functions listed first, then a function event: not ready and no table until the triggers are listed", async () => {
    const w = world();
    try {
      await w.nats.list("functions", [fn("hello")]);
      await w.nats.created(fn("added"));
      // /readyz reads `loaded`; the proxy answers 503 UNAVAILABLE while there is no router.
      expect(w.store.loaded, "ready with triggers unlisted").to.equal(false);
      expect(w.store.router).to.equal(undefined);
      expect(w.started()).to.equal(false);
      expect(w.lookup("default", "missing")).to.equal(undefined);

      await w.nats.list("httptriggers", [trigger("orders", "/orders", "hello")]);
      await w.loading;
      expect(w.store.loaded).to.equal(true);
      const router = w.store.router!;
      // The trigger route, the listed function, and the function from the event held meanwhile.
      expect(router.match("GET", undefined, "/orders")?.target.name).to.equal("hello");
      expect(router.match("GET", undefined, "/function/hello")?.target.name).to.equal("hello");
      expect(router.match("GET", undefined, "/function/added")?.target.name).to.equal("added");
      expect(w.lookup("default", "added")).not.to.equal(null);
      expect(w.lookup("default", "missing")).to.equal(null);
    } finally {
      w.stop();
    }
  });

  it("triggers listed first, then a trigger event: not ready, and the invoker hands a call back instead of NOT_FOUND", async () => {
    const w = world();
    try {
      await w.nats.list("httptriggers", []);
      await w.nats.created(trigger("orders", "/orders", "hello"));
      expect(w.store.loaded, "ready with functions unlisted").to.equal(false);
      expect(w.store.router).to.equal(undefined);
      expect(w.started()).to.equal(false);
      // The function exists in the registry; this gateway just has not listed functions yet.
      expect(w.lookup("default", "hello")).to.equal(undefined);
      const early = await deliver(w, "hello");
      expect(early.settled, "the delivery is handed back to the stream").to.deep.equal(["nak"]);
      expect(early.deadLetters, "no dead letter").to.deep.equal([]);
      expect(early.statuses, "no final status written").to.deep.equal([]);

      await w.nats.list("functions", [fn("hello")]);
      await w.loading;
      expect(w.store.loaded).to.equal(true);
      expect(w.store.router!.match("GET", undefined, "/orders")?.target.name).to.equal("hello");
      expect(w.lookup("default", "hello")?.name).to.equal("hello");
      // Loaded, an unknown function is final: that is the NOT_FOUND the invoker may dead-letter.
      const unknown = await deliver(w, "missing");
      expect(unknown.settled).to.deep.equal(["ack"]);
      expect(unknown.deadLetters).to.deep.equal([subj.dead("default", "missing")]);
    } finally {
      w.stop();
    }
  });
});
