import { FizzError, type Instance } from "@fizz/events";
import type { Clock, Logger } from "@fizz/kit";
import type { Catalog } from "./catalog";
import type { InstancesPublisher, PoolkeeperClient } from "./clients";
import {
  PENDING_GRANT_TTL_MS,
  functionKey,
  loadOf,
  type InstanceTable,
  type Tracked,
} from "./instance-table";
import type { RouteStore } from "./route-cache";

export interface RetirerDeps {
  table: InstanceTable;
  routes: RouteStore;
  poolkeeper: PoolkeeperClient;
  publisher: InstancesPublisher;
  catalog: Catalog;
  drainMs: number;
  now: () => number;
  /** Timers (realClock.after in production; a hand-moved clock in unit tests). */
  after: Clock["after"];
  logger: Logger;
}

/**
 * Every way an instance leaves the scheduler's view goes through here, in one order: out of the
 * in-memory table (no lease can pick it any more), gateways told (scheduler.instances removed),
 * then out of Redis and retired at the poolkeeper. Redis and poolkeeper calls run in the
 * background and are tracked, so stop() can wait for them.
 */
export class Retirer {
  private readonly background = new Set<Promise<void>>();
  private readonly log: Logger;

  constructor(private readonly d: RetirerDeps) {
    this.log = d.logger.child({ component: "retirer" });
  }

  /**
   * Stops handing the instances out now and tells gateways at once; retires them after drainMs,
   * or sooner once usage reports show nothing in flight (maybeFinishDrain).
   */
  drain(list: Iterable<Tracked>, reason: string, revision?: number): Tracked[] {
    const now = this.d.now();
    const fresh = [...list].filter((t) => !t.draining && this.d.table.get(t.id) === t);
    for (const t of fresh) {
      t.draining = true;
      t.drainStartedAt = now;
      t.cancelDrain = this.d.after(this.d.drainMs, () => this.retire(t, reason));
    }
    if (fresh.length > 0) {
      this.log.info({ instances: fresh.map((t) => t.id), reason }, "draining instances");
      this.announce(fresh, revision);
    }
    return fresh;
  }

  /** Called after a usage report touched a draining instance. */
  maybeFinishDrain(t: Tracked): void {
    if (!t.draining || this.d.table.get(t.id) !== t) return;
    const now = this.d.now();
    if (loadOf(t, now) > 0) return;
    // A gateway that has not reported since the drain began may have started a request after its
    // last report; wait for it, unless it has been silent long enough to hold nothing.
    for (const u of t.usage.values()) {
      const silent = now - Math.max(u.reportedAt, u.grantedAt) >= PENDING_GRANT_TTL_MS;
      if (u.reportedAt < t.drainStartedAt && !silent) return;
    }
    this.retire(t, "drained: nothing in flight");
  }

  /** Out of service at once (e.g. a gateway could not reach it): no drain period. */
  retireNow(list: Iterable<Tracked>, reason: string): void {
    const now = [...list].filter((t) => this.d.table.get(t.id) === t);
    if (now.length === 0) return;
    this.announce(now.filter((t) => !t.draining));
    for (const t of now) this.retire(t, reason);
  }

  /**
   * Another replica took the instance out of service and does the rest (Redis, poolkeeper): we
   * only stop handing it out. Its id stays tombstoned, so a late event does not bring it back.
   */
  dropQuietly(t: Tracked): void {
    if (this.d.table.get(t.id) !== t) return;
    this.d.table.remove(t.id, this.d.now());
    this.log.debug({ instance: t.id }, "another scheduler replica removed the instance");
  }

  /**
   * Tells gateways and the other replicas to stop using instances this replica does not know (a
   * gateway reported them failed after a lease from another replica).
   */
  announceIds(namespace: string, name: string, ids: string[]): void {
    const revision = this.d.catalog.fn(namespace, name)?.metadata.revision;
    if (revision === undefined || ids.length === 0) return;
    try {
      this.d.publisher.removed(namespace, name, revision, ids);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "could not publish scheduler.instances");
    }
  }

  /** Retires an instance we do not track (one reported failed that the poolkeeper still lists). */
  retireUntracked(id: string, reason: string): void {
    this.track(
      this.d.poolkeeper.retire(id, reason).then(
        () => undefined,
        (err: unknown) =>
          this.log.warn({ instance: id, err: (err as Error).message }, "poolkeeper.retire failed"),
      ),
    );
  }

  /** The poolkeeper says the instance is gone (died, retired, or missing from its list). */
  forget(instance: Instance, reason: string): void {
    this.d.table.absolve(instance.id);
    const t = this.d.table.remove(instance.id, this.d.now());
    if (t && !t.draining) this.announce([t]);
    if (t) this.log.info({ instance: t.id, reason }, "instance gone");
    const fn = instance.function ?? (t && { namespace: t.namespace, name: t.name });
    // Even when this replica did not know it, another replica may have written it to Redis.
    if (fn) this.track(this.removeRoute(fn.namespace, fn.name, instance.id));
  }

  /** Resolves once every background Redis/poolkeeper call started so far has settled. */
  async idle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /** Cancels pending drain timers; instances still draining are found again after a restart. */
  stop(): void {
    for (const t of this.d.table.all()) {
      t.cancelDrain?.();
      t.cancelDrain = undefined;
    }
  }

  private retire(t: Tracked, reason: string): void {
    if (this.d.table.get(t.id) !== t) return;
    this.d.table.remove(t.id, this.d.now());
    this.log.info(
      { instance: t.id, function: functionKey(t.namespace, t.name), revision: t.revision, reason },
      "retiring instance",
    );
    this.track(
      (async () => {
        await this.removeRoute(t.namespace, t.name, t.id);
        try {
          await this.d.poolkeeper.retire(t.id, reason);
        } catch (err) {
          const fe = FizzError.from(err);
          // NOT_FOUND: it is already gone, which is what we wanted. Anything else: the periodic
          // reconcile with poolkeeper.list finds it again (unknown to us, so adopted or retired).
          if (fe.code !== "NOT_FOUND")
            this.log.warn({ instance: t.id, err: fe.message }, "poolkeeper.retire failed");
        }
      })(),
    );
  }

  private async removeRoute(namespace: string, name: string, id: string): Promise<void> {
    try {
      await this.d.routes.remove(namespace, name, id);
    } catch (err) {
      this.log.warn(
        { instance: id, err: (err as Error).message },
        "could not remove the route from Redis",
      );
    }
  }

  private announce(list: Tracked[], revision?: number): void {
    const groups = new Map<string, Tracked[]>();
    for (const t of list) {
      const key = functionKey(t.namespace, t.name);
      groups.set(key, [...(groups.get(key) ?? []), t]);
    }
    for (const group of groups.values()) {
      const first = group[0];
      if (!first) continue;
      const current =
        revision ??
        this.d.catalog.fn(first.namespace, first.name)?.metadata.revision ??
        Math.max(...group.map((t) => t.revision));
      try {
        this.d.publisher.removed(
          first.namespace,
          first.name,
          current,
          group.map((t) => t.id),
        );
      } catch (err) {
        // Closed connection during shutdown; gateways learn from their own failures and the next lease.
        this.log.warn({ err: (err as Error).message }, "could not publish scheduler.instances");
      }
    }
  }

  private track(p: Promise<void>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }
}
