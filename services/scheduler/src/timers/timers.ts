import { TIMER_LEADER_BUCKET, type Subjects } from "@fizz/events";
import {
  ensureBus,
  LeaderElection,
  publishInvocation,
  backgroundClock,
  retryUntil,
  RetryStopped,
  tracer,
  warnWhenSlow,
  type Logger,
  type NatsConnection,
  type Redis,
  type Subscription,
} from "@fizz/kit";
import { Counter, Gauge, type Registry } from "prom-client";
import { RedisTickRecord } from "./tick-record";
import { TimerCatalog } from "./timer-catalog";
import { TimerLoop } from "./timer-loop";
import { listTimers } from "./timer-sync";

export interface TimersOptions {
  nc: NatsConnection;
  subjects: Subjects;
  redis: Redis;
  redisPrefix: string;
  /** This replica's id: the leader key's value and the envelopes' sender. */
  sender: string;
  /** The leader lock's TTL (kit's LeaderElection states what it guarantees). */
  leaseMs: number;
  catchupMs: number;
  rpcTimeoutMs: number;
  now: () => number;
  logger: Logger;
  metrics: Registry;
  /** Subscribes the catalog to registry.changed.timetriggers (subscriptions.ts). */
  subscribe(catalog: TimerCatalog): Subscription;
}

export interface Timers {
  isLeader(): boolean;
  stop(): Promise<void>;
}

/**
 * Timer triggers: the catalog (listing + change events), the invocation stream, the leader
 * election (kit's LeaderElection, a NATS KV lock: leadership lives on the bus the ticks are
 * published on) and the loop that fires while leading. A replica contends only once it can both
 * publish (the stream exists) and knows the timers (first listing done): a replica that cannot do
 * its job must not lead while another could.
 */
export function startTimers(o: TimersOptions): Timers {
  const log = o.logger.child({ component: "timers" });
  const stopping = new AbortController();
  const outcomes = new Counter({
    name: "fizz_scheduler_timer_ticks_total",
    help: "Timer ticks by outcome: fired on time, fired late (catchup), publish failed (retried), missed (skipped)",
    labelNames: ["outcome"],
    registers: [o.metrics],
  });
  let js: Awaited<ReturnType<typeof ensureBus>>["js"] | undefined;
  const clock = { ...backgroundClock, now: o.now };
  const leader = new LeaderElection({
    nc: o.nc,
    bucket: TIMER_LEADER_BUCKET,
    id: o.sender,
    ttlMs: o.leaseMs,
    logger: o.logger,
    name: "timers",
    onElected: () => loop.lead(),
    onDeposed: () => loop.follow(),
  });
  const loop = new TimerLoop({
    publish: async (inv) => {
      if (!js) throw new Error("the invocation stream is not ready");
      // Each firing starts a trace; the invoker's delivery and the function continue it.
      const span = tracer().startSpan("timer.fire", "producer", undefined, {
        "fizz.function": `${inv.namespace}/${inv.function}`,
        "fizz.trigger": inv.trigger ?? "",
        "fizz.call_id": inv.callId,
      });
      try {
        await publishInvocation(js, o.subjects, inv, o.sender, span.context);
      } catch (err) {
        span.fail((err as Error).message);
        throw err;
      } finally {
        span.end();
      }
    },
    record: new RedisTickRecord(o.redis, o.redisPrefix),
    isLeader: () => leader.isLeader(),
    catchupMs: o.catchupMs,
    clock,
    logger: o.logger,
    onOutcome: (outcome, n) => outcomes.inc({ outcome }, n),
  });
  const catalog = new TimerCatalog((change) => loop.apply(change));
  new Gauge({
    name: "fizz_scheduler_timer_leader",
    help: "1 while this replica is the timer leader and fires timers",
    registers: [o.metrics],
    collect() {
      this.set(leader.isLeader() ? 1 : 0);
    },
  });
  new Gauge({
    name: "fizz_scheduler_timers_failed",
    help: "Timer triggers not fired because their schedule cannot run (out of range, never fires); the log says why",
    registers: [o.metrics],
    collect() {
      this.set(loop.failed);
    },
  });
  new Gauge({
    name: "fizz_scheduler_timers",
    help: "Timer triggers known to this replica",
    registers: [o.metrics],
    collect() {
      this.set(loop.timers);
    },
  });

  // Subscribed before the listing is requested: one connection keeps the order, so the server
  // holds the subscription before the registry can read what it answers.
  const subscription = o.subscribe(catalog);
  const listing = listTimers({
    nc: o.nc,
    subjects: o.subjects,
    catalog,
    sender: o.sender,
    timeoutMs: o.rpcTimeoutMs,
    logger: o.logger,
    signal: stopping.signal,
  });
  const settingUp = { signal: stopping.signal, baseMs: 200, maxMs: 5000 };
  const bootstrap = (async () => {
    js = await retryUntil(async () => (await ensureBus(o.nc, o.subjects)).js, {
      ...settingUp,
      onRetry: warnWhenSlow(log, "could not set up the invocation stream; retrying"),
    });
    await listing.synced;
    if (stopping.signal.aborted) return;
    await retryUntil(() => leader.start(), {
      ...settingUp,
      onRetry: warnWhenSlow(log, "could not open the timer leader bucket; retrying"),
    });
  })().catch((err: unknown) => {
    if (!(err instanceof RetryStopped)) log.error({ err }, "timers failed to start");
  });

  return {
    isLeader: () => leader.isLeader(),
    stop: async () => {
      stopping.abort();
      await bootstrap;
      // The loop first, publications in flight included, so nothing fires once the lock is
      // handed back to a successor.
      subscription.unsubscribe();
      await loop.stop();
      await leader.stop();
    },
  };
}
