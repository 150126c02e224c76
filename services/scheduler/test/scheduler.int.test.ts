import { expect } from "chai";
import { Redis } from "ioredis";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Codecs, FizzError, type FunctionObject, type LeaseRequest } from "@fizz/events";
import { publish, request } from "@fizz/kit";
import { startNats, startRedis, waitFor, type TestServer } from "@fizz/testkit";
import { loadConfig, start, type Scheduler } from "../src/index";
import { envObj, fnObj } from "./fixtures";
import { logger, s, Stage } from "./stage";

describe("scheduler (integration: real NATS and Redis)", function () {
  let nats: TestServer;
  let redisServer: TestServer;
  let nc: NatsConnection;
  let redis: Redis;
  let stage: Stage;
  let sched: Scheduler | undefined;

  const config = (extra: Record<string, string> = {}) =>
    loadConfig({
      FIZZ_NATS_URL: nats.url,
      FIZZ_REDIS_URL: redisServer.url,
      FIZZ_DRAIN_MS: "100",
      FIZZ_REAP_INTERVAL_MS: "50",
      FIZZ_LOG_LEVEL: "silent",
      ...extra,
    });
  const startScheduler = async (extra: Record<string, string> = {}) =>
    (sched = await start(config(extra), { logger }));
  const lease = (fn: string, o: Partial<LeaseRequest> = {}) =>
    request(
      nc,
      s.schedulerLease,
      Codecs.schedulerLease,
      { namespace: "default", function: fn, gateway: "gateway-test", ...o },
      {
        sender: "gateway-test",
        timeoutMs: 10_000,
      },
    );
  const updateFunction = (obj: FunctionObject) => {
    stage.put(obj);
    const { namespace, name, revision } = obj.metadata;
    publish(
      nc,
      s.registryChanged("functions"),
      Codecs.registryChanged,
      { kind: "functions", op: "updated", namespace, name, revision, object: obj },
      "stage-test",
    );
  };

  before(async () => {
    [nats, redisServer] = await Promise.all([startNats(), startRedis()]);
    nc = await connect({ servers: nats.url });
    redis = new Redis(redisServer.url);
  });

  after(async () => {
    await nc?.close();
    redis?.disconnect();
    await Promise.all([nats?.cleanup(), redisServer?.cleanup()]);
  });

  beforeEach(async () => {
    await redis.flushall();
    stage = new Stage(nc);
    stage.put(envObj("node"), fnObj("hello"));
    stage.start();
  });

  afterEach(async () => {
    await sched?.stop();
    sched = undefined;
    stage.stop();
  });

  it("leases over NATS: specializes once, writes the route cache to Redis, is ready and counts the lease", async () => {
    const { port } = await startScheduler();
    const { lease: l } = await lease("hello");
    expect(stage.specializeCalls).to.have.length(1);
    expect(l).to.include({ slots: 50, concurrency: 50, timeoutMs: 60_000 });
    expect(l.function).to.deep.equal({ namespace: "default", name: "hello", revision: 1 });

    const stored = await redis.hgetall("fizz:v1:routes:default:hello");
    expect(Object.keys(stored)).to.deep.equal([l.instanceId]);
    expect(JSON.parse(stored[l.instanceId]!)).to.include({ id: l.instanceId, address: l.address });
    expect(await redis.smembers("fizz:v1:routes:index")).to.deep.equal(["default/hello"]);

    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).to.equal(200);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).to.match(/fizz_scheduler_leases_total\{outcome="specialized"[^}]*\} 1/);
    expect(metrics).to.match(/fizz_scheduler_instances\{state="active"[^}]*\} 1/);
  });

  it("shares one specialization among 20 concurrent lease requests", async () => {
    await startScheduler();
    const replies = await Promise.all(Array.from({ length: 20 }, () => lease("hello")));
    expect(stage.specializeCalls).to.have.length(1);
    expect(new Set(replies.map((r) => r.lease.instanceId)).size).to.equal(1);
  });

  it("rebuilds from Redis after a restart and answers a lease without a new specialization", async () => {
    await startScheduler();
    const first = await lease("hello");
    await sched!.stop();
    // The poolkeeper cannot confirm anything yet: what Redis says must be enough.
    stage.listAnswers = false;
    await startScheduler();
    const again = await lease("hello");
    expect(again.lease.instanceId).to.equal(first.lease.instanceId);
    expect(stage.specializeCalls).to.have.length(1);
  });

  it("drops an instance the poolkeeper reports dead: Redis cleaned, gateways told, next lease specializes", async () => {
    await startScheduler();
    const { lease: l } = await lease("hello");
    const inst = stage.instances.find((i) => i.id === l.instanceId)!;
    stage.instances = [];
    publish(
      nc,
      s.poolkeeperInstance("died"),
      Codecs.poolkeeperInstance,
      { event: "died", instance: inst, reason: "exit 1" },
      "stage-test",
    );
    await waitFor(() => stage.changes.some((c) => c.removed.includes(l.instanceId)), {
      what: "scheduler.instances removed",
    });
    expect(stage.changes[0]).to.deep.equal({
      namespace: "default",
      function: "hello",
      revision: 1,
      removed: [l.instanceId],
    });
    await waitFor(async () => (await redis.hlen("fizz:v1:routes:default:hello")) === 0, {
      what: "route removed",
    });
    expect(await redis.smembers("fizz:v1:routes:index")).to.deep.equal([]);
    const next = await lease("hello");
    expect(next.lease.instanceId).to.not.equal(l.instanceId);
    expect(stage.specializeCalls).to.have.length(2);
  });

  it("on a function update tells gateways at once, retires old instances and specializes the new revision", async () => {
    await startScheduler();
    const old = (await lease("hello")).lease;
    updateFunction(fnObj("hello", { revision: 2 }));
    await waitFor(
      () => stage.changes.some((c) => c.revision === 2 && c.removed.includes(old.instanceId)),
      {
        what: "old instance announced removed",
      },
    );
    const fresh = (await lease("hello")).lease;
    expect(fresh.function.revision).to.equal(2);
    expect(stage.specializeCalls.map((c) => c.function.revision)).to.deep.equal([1, 2]);
    await waitFor(() => stage.retireCalls.includes(old.instanceId), {
      what: "old instance retired",
    });
    const routes = await redis.hgetall("fizz:v1:routes:default:hello");
    expect(Object.keys(routes)).to.deep.equal([fresh.instanceId]);
  });

  it("refreshes from the registry when a lease names a newer revision than it has seen, never leasing the old one", async () => {
    await startScheduler();
    const old = (await lease("hello")).lease;
    stage.put(fnObj("hello", { revision: 2 })); // updated; the change event has not reached us
    const fresh = (await lease("hello", { minRevision: 2, gateway: "gateway-2" })).lease;
    expect(fresh.function.revision).to.equal(2);
    expect(stage.specializeCalls.map((c) => c.function.revision)).to.deep.equal([1, 2]);
    await waitFor(
      () => stage.changes.some((c) => c.revision === 2 && c.removed.includes(old.instanceId)),
      {
        what: "old instance announced removed",
      },
    );
    await waitFor(() => stage.retireCalls.includes(old.instanceId), {
      what: "old instance retired",
    });
  });

  it("reaps an instance idle past its idleTimeout", async () => {
    stage.put(fnObj("hello", { idleTimeoutSeconds: 0.2 }));
    await startScheduler();
    const { lease: l } = await lease("hello");
    await waitFor(() => stage.retireCalls.includes(l.instanceId), {
      timeoutMs: 5000,
      what: "idle instance retired",
    });
    expect(stage.changes.some((c) => c.removed.includes(l.instanceId))).to.equal(true);
    await waitFor(async () => (await redis.hlen("fizz:v1:routes:default:hello")) === 0, {
      what: "route removed",
    });
  });

  it("returns FUNCTION_LOAD_FAILED with the loader's message and does not retry it at once", async () => {
    stage.failWith = new FizzError(
      "FUNCTION_LOAD_FAILED",
      "hello.js:3: ReferenceError: nope is not defined",
    );
    await startScheduler();
    for (let i = 0; i < 3; i++) {
      const err = await lease("hello").then(
        () => expect.fail("expected FUNCTION_LOAD_FAILED"),
        (e: unknown) => e as FizzError,
      );
      expect(err).to.include({
        code: "FUNCTION_LOAD_FAILED",
        message: "hello.js:3: ReferenceError: nope is not defined",
      });
    }
    expect(stage.specializeCalls).to.have.length(1);
  });

  it("answers NOT_FOUND for a function the registry does not know", async () => {
    await startScheduler();
    const err = await lease("nope").then(
      () => expect.fail("expected NOT_FOUND"),
      (e: unknown) => e as FizzError,
    );
    expect(err.code).to.equal("NOT_FOUND");
    expect(stage.specializeCalls).to.have.length(0);
  });

  it("answers a malformed lease request with MALFORMED_MESSAGE naming the field, changing nothing", async () => {
    await startScheduler();
    const bad = Codecs.schedulerLease.request.encode(
      { namespace: "Not_A_Label", function: "hello", gateway: "g" },
      "gateway-test",
    );
    const reply = await nc.request(s.schedulerLease, bad, { timeout: 5000 });
    let err: FizzError | undefined;
    try {
      Codecs.schedulerLease.reply.decode(reply.data);
    } catch (e) {
      err = e as FizzError;
    }
    expect(err).to.be.instanceOf(FizzError);
    expect(err!.code).to.equal("MALFORMED_MESSAGE");
    expect(err!.field).to.equal("data.namespace");
    expect(stage.specializeCalls).to.have.length(0);
  });
});
