import { Codecs, FizzError, type Subjects } from "@fizz/events";
import { listen, serve, type Logger, type NatsConnection, type Subscription } from "@fizz/kit";
import {
  onInstanceEvent,
  onInstancesRemovedElsewhere,
  onRegistryChanged,
  onUsageReport,
  type Model,
} from "./handlers";
import type { LeaseService } from "./lease";
import type { PoolkeeperRestarts } from "./poolkeeper-restarts";
import type { SchedulerMetrics } from "./metrics";
import type { TimerCatalog } from "./timers/timer-catalog";

/**
 * Events every replica must see (no queue group): each keeps its own in-memory view, and a replica
 * that missed a registry change or a death would hand out stale or dead instances.
 */
export function subscribeEvents(
  nc: NatsConnection,
  s: Subjects,
  m: Model,
  opts: { sender: string; logger: Logger; poolkeeperRestarts?: PoolkeeperRestarts },
): Subscription[] {
  const { logger } = opts;
  return [
    // One subscription, one decode per instance event (a "specialized" one arrives with the
    // specialize reply, on the cold path). The sender says which poolkeeper process speaks: a
    // new one means requests to its predecessor are lost.
    nc.subscribe(s.poolkeeperInstanceAll, {
      callback: (err, msg) => {
        // Said as listen() says it: a refused subscription (NATS permissions) would otherwise
        // leave this replica blind to every instance event without a word.
        if (err) {
          logger.error(
            { err: err.message, subject: s.poolkeeperInstanceAll },
            "subscription error",
          );
          return;
        }
        let env;
        try {
          env = Codecs.poolkeeperInstance.decode(msg.data);
        } catch (e) {
          logger.warn(
            { err: (e as Error).message, subject: msg.subject },
            "dropped a malformed message",
          );
          return;
        }
        opts.poolkeeperRestarts?.observe(env.sender);
        const ev = env.data;
        // At once, as listen() runs handlers: events of every subscription in delivery order.
        try {
          onInstanceEvent(m, ev);
        } catch (e) {
          logger.error({ err: e }, "event handler failed");
        }
      },
    }),
    // Other replicas' removals; listen() hides the envelope, and our own must be skipped.
    nc.subscribe(s.schedulerInstancesAll, {
      callback: (err, msg) => {
        if (err) return;
        try {
          const env = Codecs.schedulerInstances.decode(msg.data);
          if (env.sender !== opts.sender) onInstancesRemovedElsewhere(m, env.data);
        } catch (e) {
          logger.warn({ err: (e as Error).message }, "dropped a malformed scheduler.instances");
        }
      },
    }),
    listen(
      nc,
      s.registryChanged("functions"),
      Codecs.registryChanged,
      (ev) => onRegistryChanged(m, ev),
      { logger },
    ),
    listen(
      nc,
      s.registryChanged("environments"),
      Codecs.registryChanged,
      (ev) => onRegistryChanged(m, ev),
      { logger },
    ),
    listen(nc, s.schedulerReport, Codecs.schedulerReport, (r) => onUsageReport(m, r), { logger }),
  ];
}

/**
 * registry.changed.timetriggers, on every replica: a follower keeps its timers current so it can
 * take over the moment the leader's lease ends.
 */
export function subscribeTimerEvents(
  nc: NatsConnection,
  s: Subjects,
  timers: TimerCatalog,
  opts: { logger: Logger },
): Subscription {
  return listen(
    nc,
    s.registryChanged("timetriggers"),
    Codecs.registryChanged,
    (ev) => timers.apply(ev),
    { logger: opts.logger },
  );
}

/**
 * scheduler.lease, shared by the replicas (queue group "scheduler"). `inFlight` holds the
 * unanswered requests so a graceful stop can answer them before the connection closes.
 */
export function serveLeases(
  nc: NatsConnection,
  s: Subjects,
  leases: LeaseService,
  metrics: SchedulerMetrics,
  opts: { sender: string; logger: Logger; inFlight: Set<Promise<unknown>> },
): Subscription {
  return serve(
    nc,
    s.schedulerLease,
    Codecs.schedulerLease,
    async (req) => {
      const started = performance.now();
      const work = leases.lease(req);
      opts.inFlight.add(work);
      let outcome = "INTERNAL";
      try {
        const r = await work;
        outcome = r.outcome;
        return { lease: r.lease };
      } catch (err) {
        const fe = FizzError.from(err);
        outcome = fe.code;
        throw fe;
      } finally {
        opts.inFlight.delete(work);
        metrics.leases.inc({ outcome });
        metrics.leaseDuration.observe({ outcome }, (performance.now() - started) / 1000);
      }
    },
    { sender: opts.sender, logger: opts.logger, queue: "scheduler", spanName: "scheduler.lease" },
  );
}
