import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect } from "chai";
import { Redis } from "ioredis";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { TIMER_LEADER_BUCKET } from "@fizz/events";
import { startNats, startRedis, waitFor, type TestServer } from "@fizz/testkit";
import { loadConfig, start, type Scheduler } from "../src/index";
import { timerLastKey } from "../src/timers/tick-record";
import { logger } from "./stage";
import { timerObj } from "./timer-fixtures";
import { InvocationTap, TimerRegistry, type Firing } from "./timer-stage";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LEASE_MS = 900;
const dayAgo = () => new Date(Date.now() - 86_400_000).toISOString();

/** Scheduled times in order, and the step between neighbours. */
function ticksOf(firings: Firing[]) {
  const ticks = firings.map((f) => f.tick).sort((a, b) => a - b);
  const steps = ticks.slice(1).map((t, i) => t - ticks[i]!);
  return { ticks, steps };
}
/** A firing published more than a second after its tick is a catch-up. */
const catchUps = (firings: Firing[]) => firings.filter((f) => f.inv.createdAt - f.tick > 1000);

async function leads(sched: Scheduler): Promise<boolean> {
  const text = await (await fetch(`http://127.0.0.1:${sched.port}/metrics`)).text();
  return /^fizz_scheduler_timer_leader(\{[^}]*\})? 1$/m.test(text);
}

describe("scheduler timers (integration: real NATS with JetStream and Redis)", function () {
  let nats: TestServer;
  let redisServer: TestServer;
  let nc: NatsConnection;
  let redis: Redis;
  let registry: TimerRegistry;
  let tap: InvocationTap;
  let schedulers: Scheduler[] = [];
  let child: ChildProcess | undefined;

  const env = (extra: Record<string, string> = {}) => ({
    FIZZ_NATS_URL: nats.url,
    FIZZ_REDIS_URL: redisServer.url,
    FIZZ_TIMER_LEASE_MS: String(LEASE_MS),
    FIZZ_LOG_LEVEL: "silent",
    ...extra,
  });
  const startScheduler = async (extra: Record<string, string> = {}) => {
    const sched = await start(loadConfig(env(extra)), { logger });
    schedulers.push(sched);
    return sched;
  };
  const leaderOf = async (among: Scheduler[]) => {
    let found: Scheduler | undefined;
    await waitFor(
      async () => {
        for (const x of among) if (await leads(x)) found = x;
        return found !== undefined;
      },
      { timeoutMs: 5000, what: "a timer leader" },
    );
    return found!;
  };

  before(async () => {
    [nats, redisServer] = await Promise.all([startNats(), startRedis()]);
    nc = await connect({ servers: nats.url });
    redis = new Redis(redisServer.url);
    tap = new InvocationTap(nc);
    await tap.start();
  });

  after(async () => {
    await tap?.stop();
    await nc?.close();
    redis?.disconnect();
    await Promise.all([nats?.cleanup(), redisServer?.cleanup()]);
  });

  beforeEach(async () => {
    await redis.flushall();
    registry = new TimerRegistry(nc);
    registry.start();
  });

  afterEach(async () => {
    child?.kill("SIGKILL");
    child = undefined;
    await Promise.all(schedulers.map((x) => x.stop()));
    schedulers = [];
    registry.stop();
    await sleep(100);
    tap.firings = [];
  });

  it("fires an @every 1s timer listed at start once per tick: distinct, consecutive seconds, the documented invocation", async () => {
    registry.put(
      timerObj("every-second", "@every 1s", {
        function: "hello",
        body: "ping",
        contentType: "text/plain",
      }),
    );
    const sched = await startScheduler();
    await waitFor(() => tap.of("every-second").length >= 4, { timeoutMs: 8000 });
    const firings = tap.of("every-second");
    const { ticks, steps } = ticksOf(firings);
    expect(new Set(ticks).size).to.equal(ticks.length);
    expect(steps.every((d) => d === 1000)).to.equal(true, `steps ${steps.join(",")}`);
    expect(ticks.every((t) => t % 1000 === 0)).to.equal(true);
    const { inv, sender, receivedAt, tick } = firings[1]!;
    const iso = new Date(tick).toISOString();
    expect(sender).to.equal(sched.sender);
    expect(inv).to.deep.include({
      callId: `timer:default:every-second:${iso}`,
      namespace: "default",
      function: "hello",
      source: "timer",
      trigger: "every-second",
      method: "POST",
      path: "/",
      body: Buffer.from("ping").toString("base64"),
      maxRetries: 3,
    });
    expect(inv.headers).to.deep.equal({
      "content-type": "text/plain",
      "x-fizz-timer": "every-second",
      "x-fizz-scheduled-time": iso,
    });
    // On time: published within a few hundred ms of its tick.
    expect(receivedAt - tick).to.be.below(500);
    // Where a next leader would resume.
    const last = await redis.get(timerLastKey("fizz:v1:", "default", "every-second"));
    expect(Date.parse(last!)).to.be.at.least(ticks[ticks.length - 1]!);
  });

  it("with two schedulers on one NATS and Redis, only the leader publishes and each tick fires exactly once", async () => {
    registry.put(timerObj("two-replicas", "@every 1s"));
    const a = await startScheduler();
    const b = await startScheduler();
    const leader = await leaderOf([a, b]);
    const t0 = Date.now();
    await sleep(4200);
    const firings = tap.of("two-replicas").filter((f) => f.receivedAt >= t0);
    const { ticks, steps } = ticksOf(firings);
    expect(ticks.length).to.be.within(4, 5);
    expect(new Set(ticks).size).to.equal(ticks.length);
    expect(steps.every((d) => d === 1000)).to.equal(true, `steps ${steps.join(",")}`);
    expect(new Set(firings.map((f) => f.sender))).to.deep.equal(new Set([leader.sender]));
    const follower = leader === a ? b : a;
    expect(await leads(follower)).to.equal(false);
    // The lock is kit's LeaderElection key in the scheduler's bucket, holding the leader's id.
    const jsm = await jetstreamManager(nc);
    const lock = await jsm.streams.getMessage(`KV_${TIMER_LEADER_BUCKET}`, {
      last_by_subj: `$KV.${TIMER_LEADER_BUCKET}.leader`,
    });
    expect(lock?.string()).to.equal(leader.sender);
  });

  it("when the leader stops, the other replica takes over within the lease ttl and the ticks go on, with at most one catch-up", async () => {
    registry.put(timerObj("handover", "@every 1s"));
    const a = await startScheduler();
    const b = await startScheduler();
    const leader = await leaderOf([a, b]);
    const follower = leader === a ? b : a;
    await waitFor(() => tap.of("handover").length >= 2, { timeoutMs: 5000 });
    await leader.stop();
    const stoppedAt = Date.now();
    await waitFor(() => leads(follower), { timeoutMs: LEASE_MS, what: "the follower leading" });
    const tookOverIn = Date.now() - stoppedAt;
    await sleep(2500);
    const firings = tap.of("handover");
    const { ticks, steps } = ticksOf(firings);
    expect(new Set(ticks).size).to.equal(ticks.length);
    expect(steps.every((d) => d === 1000 || d === 2000)).to.equal(true, `steps ${steps.join(",")}`);
    expect(catchUps(firings)).to.have.length.at.most(1);
    const after = firings.filter((f) => f.receivedAt > stoppedAt + 100);
    expect(after.length).to.be.at.least(2);
    expect(after.every((f) => f.sender === follower.sender)).to.equal(true);
    expect(tookOverIn).to.be.below(LEASE_MS);
  });

  it("when the leader is killed (SIGKILL, lease not released), the other takes over once the lease expires, with at most one catch-up", async () => {
    registry.put(timerObj("crash", "@every 1s"));
    const main = fileURLToPath(new URL("../src/main.ts", import.meta.url));
    child = spawn(process.execPath, ["--import", "tsx", main], {
      env: { ...process.env, ...env(), FIZZ_PARENT_STDIN: "1" },
      stdio: ["pipe", "ignore", "ignore"],
    });
    // The process leads (nobody else competes yet) once it fires.
    await waitFor(() => tap.of("crash").length >= 1, {
      timeoutMs: 20_000,
      what: "the child firing",
    });
    const childSender = tap.of("crash")[0]!.sender;
    const survivor = await startScheduler();
    expect(await leads(survivor)).to.equal(false);
    await waitFor(() => tap.of("crash").length >= 3, { timeoutMs: 5000 });
    child.kill("SIGKILL");
    const killedAt = Date.now();
    await waitFor(() => leads(survivor), { timeoutMs: 3000, what: "the survivor leading" });
    const tookOverIn = Date.now() - killedAt;
    await sleep(2500);
    const firings = tap.of("crash");
    const { ticks, steps } = ticksOf(firings);
    expect(new Set(ticks).size).to.equal(ticks.length);
    expect(steps.every((d) => d === 1000 || d === 2000)).to.equal(true, `steps ${steps.join(",")}`);
    expect(catchUps(firings)).to.have.length.at.most(1);
    expect(new Set(firings.map((f) => f.sender))).to.deep.equal(
      new Set([childSender, survivor.sender]),
    );
    // The lock ran out (at most its ttl after the last renewal), then the next poll (every ttl/4)
    // took it.
    expect(tookOverIn).to.be.below(LEASE_MS + LEASE_MS / 4 + 300);
  });

  it("a timer created at runtime fires, a changed cron takes effect, a deleted timer stops firing", async () => {
    await startScheduler();
    registry.change("created", timerObj("runtime", "@every 2s", { revision: 1 }));
    await waitFor(() => tap.of("runtime").length >= 2, { timeoutMs: 6000 });
    expect(ticksOf(tap.of("runtime")).steps.every((d) => d === 2000)).to.equal(true);

    registry.change("updated", timerObj("runtime", "@every 1s", { revision: 2 }));
    const changedAt = Date.now();
    await sleep(2600);
    const sinceChange = tap.of("runtime").filter((f) => f.tick > changedAt);
    expect(ticksOf(sinceChange).steps).to.deep.equal([1000]);

    registry.change("deleted", timerObj("runtime", "@every 1s", { revision: 2 }));
    await sleep(300);
    const n = tap.of("runtime").length;
    await sleep(2200);
    expect(tap.of("runtime").length).to.equal(n);
  });

  it("on becoming leader fires one catch-up for a tick missed within FIZZ_TIMER_CATCHUP_MS, and skips older ones", async () => {
    const daily = (msAgo: number) => {
      const t = new Date(Date.now() - msAgo);
      return {
        cron: `${t.getUTCSeconds()} ${t.getUTCMinutes()} ${t.getUTCHours()} * * *`,
        tick: Math.floor(t.getTime() / 1000) * 1000,
      };
    };
    const recent = daily(20_000);
    const stale = daily(300_000);
    registry.put(timerObj("recent", recent.cron, { updatedAt: dayAgo() }));
    registry.put(timerObj("stale", stale.cron, { updatedAt: dayAgo() }));
    registry.put(timerObj("storm", "@every 1s", { updatedAt: dayAgo() }));
    // The last leader fired "storm" 30 s ago, then no leader lived.
    await redis.set(
      timerLastKey("fizz:v1:", "default", "storm"),
      new Date(Date.now() - 30_000).toISOString(),
    );
    const startedAt = Date.now();
    await startScheduler({ FIZZ_TIMER_CATCHUP_MS: "60000" });
    await sleep(2000);
    expect(tap.of("recent").map((f) => f.tick)).to.deep.equal([recent.tick]);
    expect(tap.of("stale")).to.deep.equal([]);
    const storm = tap.of("storm");
    expect(storm.filter((f) => f.tick < startedAt - 1000)).to.deep.equal([]);
    expect(catchUps(storm)).to.have.length.at.most(1);
  });
});
