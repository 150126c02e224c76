import type { Clock, Logger } from "@fizz/kit";
import { Catalog, type RegistryClient } from "./catalog";
import type { ClaimStore } from "./claims";
import type { InstancesPublisher, PoolkeeperClient } from "./clients";
import type { SchedulerConfig } from "./config";
import type { Model } from "./handlers";
import { InstanceTable } from "./instance-table";
import { LeaseService } from "./lease";
import { MinInstances } from "./min-instances";
import { Reaper } from "./reaper";
import { Retirer } from "./retirement";
import type { RouteStore } from "./route-cache";
import { Specializer } from "./specializer";

/** The settings the scheduler's model reads (a subset of SchedulerConfig). */
export type GraphConfig = Pick<
  SchedulerConfig,
  | "drainMs"
  | "claimTtlMs"
  | "claimPollMs"
  | "loadFailureTtlMs"
  | "minInstancesRetryMs"
  | "reapIntervalMs"
>;

/**
 * The scheduler's outside systems, as interfaces: NATS request/reply and publish in production
 * (clients.ts), Redis for routes and claims (route-cache.ts, redis-claims.ts); fakes in unit tests.
 */
export interface GraphDeps {
  registry: RegistryClient;
  poolkeeper: PoolkeeperClient;
  publisher: InstancesPublisher;
  routes: RouteStore;
  claims: ClaimStore;
  /** Names this replica in claim tokens (its envelope sender). */
  replica: string;
  config: GraphConfig;
  now: () => number;
  /** Timers of the drain periods and claim polls; realClock.after in production. */
  after: Clock["after"];
  logger: Logger;
}

/** Everything the scheduler decides with; nothing here has started a timer or touched I/O. */
export interface SchedulerGraph {
  catalog: Catalog;
  table: InstanceTable;
  retirer: Retirer;
  specializer: Specializer;
  minInstances: MinInstances;
  /** What the event handlers (handlers.ts) act on. */
  model: Model;
  lease: LeaseService;
  /** Not started: the caller starts it once the route cache is rebuilt. */
  reaper: Reaper;
}

/**
 * Builds the scheduler's object graph, the one way both index.ts (real NATS and Redis) and the
 * unit tests (fakes at the same interfaces) assemble it, so a test exercises production wiring.
 */
export function buildScheduler(d: GraphDeps): SchedulerGraph {
  const { now, logger, config } = d;
  const catalog = new Catalog(d.registry);
  const table = new InstanceTable();
  const retirer = new Retirer({
    table,
    routes: d.routes,
    poolkeeper: d.poolkeeper,
    publisher: d.publisher,
    catalog,
    drainMs: config.drainMs,
    now,
    after: d.after,
    logger,
  });
  const specializer = new Specializer({
    catalog,
    table,
    poolkeeper: d.poolkeeper,
    routes: d.routes,
    retirer,
    claims: d.claims,
    replica: d.replica,
    claimTtlMs: config.claimTtlMs,
    pollMs: config.claimPollMs,
    loadFailureTtlMs: config.loadFailureTtlMs,
    now,
    after: d.after,
    logger,
  });
  const minInstances = new MinInstances({
    catalog,
    table,
    specializer,
    retryMs: config.minInstancesRetryMs,
    now,
    logger,
  });
  const model: Model = { catalog, table, retirer, now, logger, minInstances, waiters: specializer };
  const lease = new LeaseService({ catalog, table, retirer, specializer, model, now, logger });
  const reaper = new Reaper({
    table,
    catalog,
    retirer,
    intervalMs: config.reapIntervalMs,
    now,
    logger,
    minInstances,
  });
  return { catalog, table, retirer, specializer, minInstances, model, lease, reaper };
}
