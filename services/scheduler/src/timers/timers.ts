import { redisKeys, type Subjects } from "@fizz/events";
import {
  backoffMs,
  ensureBus,
  publishInvocation,
  sleep,
  type Logger,
  type NatsConnection,
  type Redis,
  type Subscription,
} from "@fizz/kit";
import { Counter, Gauge, type Registry } from "prom-client";
import { LeaderLease } from "./leader";
import { RedisTickRecord } from "./tick-record";
import { TimerCatalog } from "./timer-catalog";
import { TimerLoop } from "./timer-loop";
import { listTimers } from "./timer-sync";

export interface TimersOptions {
  nc: NatsConnection;
  subjects: Subjects;
  redis: Redis;
  redisPrefix: string;
  /** This replica's id: the lease's value and the envelopes' sender. */
  sender: string;
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
 * Timer triggers: the catalog (listing + change events), the invocation stream, the leader lease
 * and the loop that fires while leading. A replica competes for the lease only once it can both
 * publish (the stream exists) and knows the timers (first listing done): a replica that cannot do
 * its job must not hold the lease while another could.
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
  const lease = new LeaderLease({
    redis: o.redis,
    key: redisKeys(o.redisPrefix).lock("timers"),
    holder: o.sender,
    ttlMs: o.leaseMs,
    now: o.now,
    logger: o.logger,
  });
  const loop = new TimerLoop({
    publish: async (inv) => {
      if (!js) throw new Error("the invocation stream is not ready");
      await publishInvocation(js, o.subjects, inv, o.sender);
    },
    record: new RedisTickRecord(o.redis, o.redisPrefix),
    isLeader: () => lease.isLeader(),
    catchupMs: o.catchupMs,
    now: o.now,
    logger: o.logger,
    onOutcome: (outcome, n) => outcomes.inc({ outcome }, n),
  });
  const catalog = new TimerCatalog((change) => loop.apply(change));
  new Gauge({
    name: "fizz_scheduler_timer_leader",
    help: "1 while this replica holds the timer lease and fires timers",
    registers: [o.metrics],
    collect() {
      this.set(lease.isLeader() ? 1 : 0);
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
  const bootstrap = (async () => {
    for (let attempt = 0; !stopping.signal.aborted; attempt++) {
      try {
        js = (await ensureBus(o.nc, o.subjects)).js;
        break;
      } catch (err) {
        const wait = backoffMs(attempt, 200, 5000);
        log.warn(
          { err: (err as Error).message, retryInMs: wait },
          "could not set up the invocation stream; retrying",
        );
        await sleep(wait, stopping.signal);
      }
    }
    await listing.synced;
    if (stopping.signal.aborted) return;
    lease.start({ elected: () => loop.lead(), lost: () => loop.follow() });
  })();

  return {
    isLeader: () => lease.isLeader(),
    stop: async () => {
      stopping.abort();
      await bootstrap;
      // The loop first, publications in flight included, so nothing fires once the lease is
      // handed back to a successor.
      subscription.unsubscribe();
      await loop.stop();
      await lease.stop();
    },
  };
}
