import { randomBytes } from "node:crypto";
import { subjects } from "@fizz/events";
import {
  connectNats,
  connectRedis,
  createLogger,
  createMetricsRegistry,
  followRegistryListing,
  natsConnected,
  realClock,
  redisReady,
  retryUntil,
  RetryStopped,
  sleep,
  startOpsServer,
  warnWhenSlow,
  type Logger,
  type NatsConnection,
  type Redis,
  type Subscription,
} from "@fizz/kit";
import type { CatalogKind } from "./catalog";
import { natsPoolkeeper, natsPublisher, natsRegistry } from "./clients";
import type { SchedulerConfig } from "./config";
import { buildScheduler } from "./graph";
import { catalogListing, type Model } from "./handlers";
import { createSchedulerMetrics } from "./metrics";
import { rebuildFromRedis, reconcileWithPoolkeeper } from "./reconcile";
import { RedisClaims } from "./redis-claims";
import { RedisRouteCache } from "./route-cache";
import { PoolkeeperRestarts } from "./poolkeeper-restarts";
import { serveLeases, subscribeEvents, subscribeTimerEvents } from "./subscriptions";
import { startTimers } from "./timers/timers";

export { loadConfig, type SchedulerConfig } from "./config";
export { LeaseService, type LeaseResult, type LeaseOutcome } from "./lease";
export { Catalog, effectiveConcurrency, type RegistryClient } from "./catalog";
export { buildScheduler, type GraphDeps, type SchedulerGraph } from "./graph";
export { InstanceTable } from "./instance-table";
export { Retirer } from "./retirement";
export { Specializer, type Acquired } from "./specializer";
export { MinInstances } from "./min-instances";
export { RedisClaims } from "./redis-claims";
export { slotShare, type ClaimStore, type SlotRecord, type JoinResult } from "./claims";
export { Reaper } from "./reaper";
export { RedisRouteCache, type RouteStore } from "./route-cache";
export type { PoolkeeperClient, InstancesPublisher } from "./clients";

export interface SchedulerDeps {
  logger?: Logger;
  /** Aborts waiting for NATS/Redis/registry at start (runService passes its stop signal). */
  signal?: AbortSignal;
}

export interface Scheduler {
  /** Port of the ops server (/healthz, /readyz, /metrics). */
  port: number;
  /** The envelope sender name, `scheduler-<id>`. */
  sender: string;
  stop(): Promise<void>;
}

/**
 * Starts the scheduler: ops server first (so probes answer while we wait), then NATS, the event
 * subscriptions (before anything is read, so no change is missed), the route cache rebuilt from
 * Redis, and only then scheduler.lease — answering before the rebuild would specialize instances
 * that already exist. The registry catalog (followRegistryListing, relisted after every NATS
 * reconnect) and the poolkeeper reconcile load in the background with back-off: a lease for a
 * function not cached yet asks registry.get itself. minInstances top-ups start after the rebuild
 * too, for the same reason. The model is built by buildScheduler (graph.ts), as the unit tests
 * build it. Timers (src/timers) start alongside and compete for the leader lease once the
 * invocation stream exists and the timers are listed.
 */
export async function start(config: SchedulerConfig, deps: SchedulerDeps = {}): Promise<Scheduler> {
  // The root logger already carries {service}; components add {component}.
  const logger = deps.logger ?? createLogger("scheduler", config.logLevel);
  const sender = `scheduler-${randomBytes(4).toString("hex")}`;
  const now = () => Date.now();
  const background = new AbortController();
  const onOuterAbort = () => background.abort();
  deps.signal?.addEventListener("abort", onOuterAbort, { once: true });

  let nc: NatsConnection | undefined;
  let redisClient: Redis | undefined;
  const registry = createMetricsRegistry("scheduler");
  const ops = await startOpsServer({
    host: config.host,
    port: config.port,
    checks: { nats: () => natsConnected(nc), redis: () => redisReady(redisClient) },
    metrics: registry,
  });
  const redis = (redisClient = connectRedis({ url: config.redisUrl, logger, name: sender }));

  try {
    nc = await connectNats({
      url: config.natsUrl,
      name: sender,
      logger,
      signal: background.signal,
    });
  } catch (err) {
    await ops.close();
    redis.disconnect();
    throw err;
  }
  const conn = nc;
  const s = subjects(config.subjectPrefix);
  const poolkeeperRestarts = new PoolkeeperRestarts();
  const routes = new RedisRouteCache(
    redis,
    config.redisPrefix,
    logger.child({ component: "route-cache" }),
  );
  const poolkeeper = natsPoolkeeper(conn, s, sender, config, poolkeeperRestarts);
  const { table, retirer, minInstances, model, lease, reaper } = buildScheduler({
    registry: natsRegistry(conn, s, sender, config.rpcTimeoutMs),
    poolkeeper,
    publisher: natsPublisher(conn, s, sender),
    routes,
    claims: new RedisClaims(redis, config.redisPrefix),
    replica: sender,
    config,
    now,
    after: (ms, fn) => realClock.after(ms, fn),
    logger,
  });
  const metrics = createSchedulerMetrics(registry, {
    table,
    specializationsInFlight: () => lease.specializationsInFlight,
  });
  const timers = startTimers({
    nc: conn,
    subjects: s,
    redis,
    redisPrefix: config.redisPrefix,
    sender,
    leaseMs: config.timerLeaseMs,
    catchupMs: config.timerCatchupMs,
    rpcTimeoutMs: config.rpcTimeoutMs,
    now,
    logger,
    metrics: registry,
    subscribe: (catalog) => subscribeTimerEvents(conn, s, catalog, { logger }),
  });
  const subs: Subscription[] = subscribeEvents(conn, s, model, {
    sender,
    logger,
    poolkeeperRestarts,
  });
  // The server must hold the subscriptions before we read state, or a change in between is lost.
  await conn.flush();

  await retrying("rebuild the route cache from Redis", background.signal, logger, async () => {
    const n = await rebuildFromRedis({ table, routes, now });
    logger.info({ instances: n }, "route cache rebuilt from Redis");
  });

  const inFlight = new Set<Promise<unknown>>();
  const leaseSub = serveLeases(conn, s, lease, metrics, { sender, logger, inFlight });
  // Once start() resolves, a lease request must find a responder (not "no responders").
  await conn.flush();
  reaper.start();
  // Only now does "fewer instances than minInstances" mean missing ones, not unread ones.
  minInstances.enable();

  const loops = [
    ...followCatalog(model, {
      nc: conn,
      subjects: s,
      sender,
      logger,
      signal: background.signal,
      timeoutMs: config.rpcTimeoutMs,
      // A full catalog is when "fewer instances than minInstances" can be trusted.
      onLoaded: () => minInstances.checkAll(),
    }),
    (async () => {
      // When the poolkeeper does not answer, keep what Redis said and try again later.
      await retrying("reconcile with poolkeeper.list", background.signal, logger, () =>
        reconcileWithPoolkeeper({ table, routes, poolkeeper, retirer, now, logger }).then(
          () => undefined,
        ),
      );
      while (!background.signal.aborted) {
        await sleep(config.reconcileIntervalMs, background.signal);
        if (background.signal.aborted) break;
        await reconcileWithPoolkeeper({ table, routes, poolkeeper, retirer, now, logger }).catch(
          (err: unknown) =>
            logger.warn(
              { err: (err as Error).message },
              "reconcile with the poolkeeper failed; will retry",
            ),
        );
      }
    })(),
  ];

  logger.info({ sender, opsPort: ops.port }, "scheduler started");
  let stopping: Promise<void> | undefined;
  return {
    port: ops.port,
    sender,
    stop: () =>
      (stopping ??= (async () => {
        // Stop taking leases, answer the ones already taken, then let background work settle
        // before the connections close under it.
        background.abort();
        deps.signal?.removeEventListener("abort", onOuterAbort);
        // Timers first: the lease is handed back at once, so another replica fires the next tick.
        await timers.stop();
        reaper.stop();
        minInstances.disable();
        await leaseSub.drain().catch(() => undefined);
        await Promise.allSettled([...inFlight]);
        await Promise.allSettled(loops);
        await minInstances.idle();
        retirer.stop();
        await retirer.idle();
        for (const sub of subs) sub.unsubscribe();
        await conn.drain().catch(() => undefined);
        await redis.quit().catch(() => redis.disconnect());
        await ops.close();
        logger.info("scheduler stopped");
      })()),
  };
}

/**
 * Keeps the catalog whole from registry.list (functions and environments, relisted after every
 * NATS reconnect; handlers.ts catalogListing applies each listing); `onLoaded` runs after each
 * listing once both kinds were listed.
 */
function followCatalog(
  model: Model,
  o: Omit<Parameters<typeof followRegistryListing>[0], "kind" | "onList"> & {
    onLoaded: () => void;
  },
): Array<Promise<void>> {
  const { onLoaded, ...listing } = o;
  let announced = false;
  const loaded = () => {
    if (!announced) o.logger.info("catalog loaded from the registry");
    announced = true;
    onLoaded();
  };
  const follow = (kind: CatalogKind) =>
    followRegistryListing({ ...listing, kind, ...catalogListing(model, kind, loaded) }).synced;
  return [follow("environments"), follow("functions")];
}

/**
 * Runs `fn` until it succeeds, with back-off; gives up silently when the signal aborts. The
 * failures are normal at start-up (Redis or the poolkeeper still coming up), so they warn only
 * once the wait is long.
 */
async function retrying(
  what: string,
  signal: AbortSignal,
  logger: Logger,
  fn: () => Promise<void>,
): Promise<void> {
  try {
    await retryUntil(fn, {
      baseMs: 200,
      maxMs: 5000,
      signal,
      onRetry: warnWhenSlow(logger, `could not ${what}; retrying`),
    });
  } catch (err) {
    if (!(err instanceof RetryStopped)) throw err;
  }
}
