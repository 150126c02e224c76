import type http from "node:http";
import { FizzError, type GatewaySyncRequest, type Subjects } from "@fizz/events";
import {
  ensureBus,
  retryUntil,
  RetryStopped,
  sleep,
  warnWhenSlow,
  type Logger,
  type NatsConnection,
  type OutboundGuard,
} from "@fizz/kit";
import { jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { Registry } from "prom-client";
import { createAsyncHandler } from "./async-http";
import type { BusConfig } from "./bus-config";
import { BusMetrics } from "./bus-metrics";
import type { FunctionStatsTable } from "../stats/function-stats";
import { CallbackSender } from "./invoker/callback";
import { InvocationConsumer } from "./invoker/consumer";
import { BusLimiter } from "./invoker/limiter";
import { CallStore } from "./invoker/status";
import type { FunctionLeases, LeaseManager } from "../front-door/index";
import type { FunctionRecord } from "../front-door/route-records";
import { MqTriggerStore } from "./mq-triggers";
import type { MqtDeps } from "./mqt/common";
import { startCoreTrigger } from "./mqt/core";
import { removeTriggerConsumer, startJetStreamTrigger } from "./mqt/jetstream";

/**
 * The gateway's data plane for bus-originated calls, wired in one place: the invoker
 * (FIZZ_INVOCATIONS), async HTTP (`/async-function/`), message-queue triggers, and the limiter they
 * share. JetStream is set up in the background (retried with back-off): HTTP traffic never waits
 * for it, async requests answer 503 until it is there.
 *
 * The bus share of a function: bus calls of one function on this gateway are limited to half of
 * what the function can take from it — maxInstances × the slots of its leases (the largest seen),
 * halved; before its first lease, 1. HTTP requests therefore always have the other half: with one
 * instance, half of its slots stay free for HTTP; with more, async load can scale the function out
 * to half of maxInstances. The total is FIZZ_INVOKER_MAX_INFLIGHT.
 */
export interface BusOptions {
  nc: NatsConnection;
  subjects: Subjects;
  id: string;
  config: BusConfig;
  maxBodyBytes: number;
  queueMax: number;
  drainMs: number;
  leases: LeaseManager;
  routes: {
    readonly loaded: boolean;
    functionRecord(namespace: string, name: string): FunctionRecord | undefined;
  };
  registry: Registry;
  /** Per-function numbers shared with the front door (stats/function-stats.ts). */
  functionStats?: FunctionStatsTable;
  logger: Logger;
  /** The outbound URL guard (callbacks); owned by the caller. */
  outbound: OutboundGuard;
}

export interface Bus {
  handleAsync: http.RequestListener;
  syncMqTriggers(req: GatewaySyncRequest, signal: AbortSignal): Promise<boolean>;
  /** Resolves once JetStream is set up and the invoker pulls (or the bus stopped first). */
  ready: Promise<void>;
  stop(): Promise<void>;
}

/**
 * How every bus path (invoker, message-queue triggers) finds a function: its lease state; null
 * when there is no such function; undefined while the routes are not loaded (both kinds listed,
 * routes.ts), which callers treat as "try again later" (NAK, 503 UNAVAILABLE) and never as
 * NOT_FOUND: before the functions are listed, an absent one may well exist.
 */
export function functionLookup(
  routes: BusOptions["routes"],
  leases: LeaseManager,
): (namespace: string, name: string) => FunctionLeases | null | undefined {
  return (namespace, name) => {
    if (!routes.loaded) return undefined;
    if (!routes.functionRecord(namespace, name)) return null;
    return leases.get(namespace, name) ?? leases.target(namespace, name);
  };
}

export function startBus(o: BusOptions): Bus {
  const log = o.logger.child({ component: "bus" });
  const abort = new AbortController();
  const slotsSeen = new WeakMap<FunctionLeases, number>();
  const limiter = new BusLimiter(o.config.maxInflight, (fl) => {
    let slots = 0;
    for (const e of fl.leases) if (e.slots > slots) slots = e.slots;
    if (slots > 0) slotsSeen.set(fl, slots);
    else slots = slotsSeen.get(fl) ?? 0;
    if (slots === 0) return 1;
    const maxInstances = o.routes.functionRecord(fl.namespace, fl.name)?.maxInstances ?? 1;
    return Math.max(1, Math.floor((maxInstances * slots) / 2));
  });
  const metrics = new BusMetrics(
    o.registry,
    () => limiter.inFlight,
    () => limiter.queued,
    o.functionStats,
  );
  const lookup = functionLookup(o.routes, o.leases);
  const callbacks = new CallbackSender({
    guard: o.outbound,
    attempts: o.config.callbackAttempts,
    timeoutMs: o.config.callbackTimeoutMs,
    logger: log,
    onResult: (delivered) => metrics.callbacks.labels(delivered ? "delivered" : "failed").inc(),
  });
  let js: { js: JetStreamClient; jsm: JetStreamManager; store: CallStore } | undefined;
  let invoker: InvocationConsumer | undefined;

  const mqtDeps: MqtDeps = {
    nc: o.nc,
    jetstream: () => js,
    subjects: o.subjects,
    id: o.id,
    leases: o.leases,
    lookup,
    limiter,
    config: o.config,
    maxResponseBytes: o.maxBodyBytes,
    queueMax: o.queueMax,
    metrics,
    logger: o.logger,
  };
  const mqTriggers = new MqTriggerStore({
    nc: o.nc,
    subjects: o.subjects,
    sender: o.id,
    logger: o.logger,
    drainMs: o.drainMs,
    start: (t) =>
      t.spec.stream ? startJetStreamTrigger(mqtDeps, t) : startCoreTrigger(mqtDeps, t),
    remove: async (t) => {
      if (t.spec.stream && js) await removeTriggerConsumer(js.jsm, t);
    },
  });

  const setUp = async (): Promise<void> => {
    try {
      await retryUntil(
        async () => {
          const { js: client, calls } = await ensureBus(o.nc, o.subjects, {
            callRetentionMs: o.config.callRetentionMs,
          });
          const jsm = await jetstreamManager(o.nc);
          const store = new CallStore(
            calls,
            o.config.resultMaxBytes,
            o.nc.info?.max_payload ?? 1024 * 1024,
          );
          const consumer = new InvocationConsumer({
            nc: o.nc,
            js: client,
            jsm,
            subjects: o.subjects,
            id: o.id,
            leases: o.leases,
            lookup,
            limiter,
            store,
            callbacks,
            config: o.config,
            maxResponseBytes: o.maxBodyBytes,
            metrics,
            logger: o.logger,
          });
          await consumer.start();
          if (abort.signal.aborted) {
            await consumer.stop(0);
            return;
          }
          js = { js: client, jsm, store };
          invoker = consumer;
          log.info({ maxInflight: o.config.maxInflight }, "invoker pulling");
          return;
        },
        {
          baseMs: 250,
          maxMs: 5000,
          signal: abort.signal,
          // JetStream may come up after the gateway: a warning only when that takes a while.
          onRetry: warnWhenSlow(log, "waiting for JetStream"),
        },
      );
    } catch (err) {
      if (!(err instanceof RetryStopped)) throw err;
    }
  };
  const ready = setUp();
  // JetStream triggers need JetStream: give it a moment before loading them (they retry anyway).
  const triggersLoaded = Promise.race([ready, sleep(3000, abort.signal)]).then(() =>
    abort.signal.aborted ? undefined : mqTriggers.start(abort.signal),
  );
  triggersLoaded.catch((err: unknown) => log.error({ err }, "mq trigger loading failed"));

  return {
    handleAsync: createAsyncHandler({
      nc: o.nc,
      subjects: o.subjects,
      sender: o.id,
      bus: () => js,
      exists: (namespace, name) =>
        o.routes.loaded ? o.routes.functionRecord(namespace, name) !== undefined : undefined,
      maxBodyBytes: o.maxBodyBytes,
      outbound: o.outbound,
      metrics,
      logger: o.logger,
    }),
    syncMqTriggers: async (req, signal) => {
      await triggersLoaded.catch(() => undefined);
      return mqTriggers.sync(req, signal);
    },
    ready,
    stop: async () => {
      abort.abort();
      await ready;
      await Promise.all([invoker?.stop(o.drainMs), mqTriggers.stop()]);
      limiter.close(new FizzError("UNAVAILABLE", "the gateway is stopping"));
    },
  };
}
