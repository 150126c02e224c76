import { FizzError, type Instance, type Lease, type LeaseRequest } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import { effectiveConcurrency, timeoutMsOf, type Catalog, type Resolved } from "./catalog";
import type { PoolkeeperClient } from "./clients";
import {
  loadOf,
  recordGrant,
  revisionKey,
  type InstanceTable,
  type Tracked,
} from "./instance-table";
import type { Retirer } from "./retirement";
import type { RouteStore } from "./route-cache";

export interface LeaseDeps {
  catalog: Catalog;
  table: InstanceTable;
  poolkeeper: PoolkeeperClient;
  routes: RouteStore;
  retirer: Retirer;
  loadFailureTtlMs: number;
  now: () => number;
  logger: Logger;
}

/** existing: an instance was there; specialized: this request started one; joined: it waited on another's. */
export type LeaseOutcome = "existing" | "specialized" | "joined";
export interface LeaseResult {
  lease: Lease;
  outcome: LeaseOutcome;
}

/** A function that changes revision during every specialization cannot be leased; give up after this many. */
const MAX_ATTEMPTS = 3;

/**
 * scheduler.lease: which instance serves a request for a function. With a usable instance in
 * memory the answer involves no I/O at all; otherwise one specialization per function revision is
 * in flight at a time (single flight) and every request that needs an instance shares it.
 */
export class LeaseService {
  private readonly inflight = new Map<string, Promise<Tracked | undefined>>();
  private readonly loadFailures = new Map<string, { error: FizzError; until: number }>();
  private readonly log: Logger;

  constructor(private readonly d: LeaseDeps) {
    this.log = d.logger.child({ component: "lease" });
  }

  get specializationsInFlight(): number {
    return this.inflight.size;
  }

  async lease(req: LeaseRequest): Promise<LeaseResult> {
    if (req.failed.length > 0) this.retireFailed(req);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const r =
        this.d.catalog.resolveCached(req.namespace, req.function) ??
        (await this.d.catalog.resolve(req.namespace, req.function));
      const picked = this.pick(r, req);
      if (picked) return { lease: this.grant(picked, r, req.gateway), outcome: "existing" };

      const flight = this.flightFor(r);
      const t = await flight.promise;
      // The instance may have died, or the function changed, while we waited: then look again.
      if (t && this.isUsable(t)) {
        return {
          lease: this.grant(t, r, req.gateway),
          outcome: flight.started ? "specialized" : "joined",
        };
      }
    }
    throw new FizzError(
      "UNAVAILABLE",
      `function ${req.namespace}/${req.function} kept changing while instances were specialized; ask again`,
    );
  }

  /** Least loaded instance of the current revision that this gateway did not exclude. */
  private pick(r: Resolved, req: LeaseRequest): Tracked | undefined {
    const rev = r.fn.metadata.revision;
    const now = this.d.now();
    let best: Tracked | undefined;
    let bestLoad = Infinity;
    for (const t of this.d.table.ofFunction(req.namespace, req.function)) {
      if (
        t.revision !== rev ||
        t.draining ||
        req.exclude.includes(t.id) ||
        req.failed.includes(t.id)
      )
        continue;
      const load = loadOf(t, now);
      if (load < bestLoad) {
        best = t;
        bestLoad = load;
      }
    }
    return best;
  }

  private grant(t: Tracked, r: Resolved, gateway: string): Lease {
    const concurrency = t.instance.concurrency ?? effectiveConcurrency(r.fn, r.env);
    // Every gateway gets the whole concurrency for now; the runtime's own limit (429) is the
    // backstop when two gateways share an instance. Per-gateway slot shares come later.
    const slots = concurrency;
    recordGrant(t, gateway, slots, this.d.now());
    return {
      instanceId: t.id,
      address: t.instance.address,
      function: { namespace: t.namespace, name: t.name, revision: t.revision },
      slots,
      concurrency,
      timeoutMs: timeoutMsOf(r.fn),
    };
  }

  private isUsable(t: Tracked): boolean {
    const current = this.d.catalog.fn(t.namespace, t.name);
    return this.d.table.get(t.id) === t && !t.draining && current?.metadata.revision === t.revision;
  }

  private flightFor(r: Resolved): { promise: Promise<Tracked | undefined>; started: boolean } {
    const { namespace, name, revision } = r.fn.metadata;
    const key = revisionKey(namespace, name, revision);
    const existing = this.inflight.get(key);
    if (existing) return { promise: existing, started: false };

    const now = this.d.now();
    const memo = this.loadFailures.get(key);
    if (memo && memo.until > now) throw memo.error;
    if (memo) this.loadFailures.delete(key);

    const live = this.d.table.liveCount(namespace, name, revision);
    if (live >= r.fn.spec.maxInstances) {
      throw new FizzError(
        "NO_CAPACITY",
        `function ${namespace}/${name} has ${live} of maxInstances ${r.fn.spec.maxInstances} instances and none is free; retry`,
      );
    }
    const promise = this.specialize(r).finally(() => this.inflight.delete(key));
    this.inflight.set(key, promise);
    return { promise, started: true };
  }

  /** Resolves undefined when the instance is no longer wanted (function changed, instance died). */
  private async specialize(r: Resolved): Promise<Tracked | undefined> {
    const { fn, env } = r;
    const { namespace, name, revision, uid } = fn.metadata;
    const key = revisionKey(namespace, name, revision);
    const concurrency = effectiveConcurrency(fn, env);
    const startedAt = performance.now();
    let instance: Instance;
    try {
      instance = await this.d.poolkeeper.specialize({
        environment: { namespace, name: fn.spec.environment },
        function: { namespace, name, revision },
        code: fn.spec.code,
        entrypoint: fn.spec.entrypoint,
        concurrency,
      });
    } catch (err) {
      const fe = FizzError.from(err);
      if (fe.code === "FUNCTION_LOAD_FAILED") this.rememberLoadFailure(key, fe);
      this.log.warn({ function: key, code: fe.code, err: fe.message }, "specialization failed");
      throw fe;
    }
    const got = instance.function;
    if (
      instance.state !== "specialized" ||
      got?.namespace !== namespace ||
      got.name !== name ||
      got.revision !== revision
    ) {
      // Routing to an instance loaded with anything else would serve the wrong code.
      this.log.error(
        { function: key, instance },
        "poolkeeper answered specialize with another function's instance",
      );
      throw new FizzError(
        "INTERNAL",
        `poolkeeper returned instance ${instance.id} not specialized with ${key}`,
      );
    }
    const now = this.d.now();
    if (this.d.table.isTombstoned(instance.id, now)) return undefined; // died before its reply reached us
    const withLimit: Instance = instance.concurrency ? instance : { ...instance, concurrency };
    const t = this.d.table.add(withLimit, now);
    if (!t) return undefined;
    const current = this.d.catalog.fn(namespace, name);
    if (current?.metadata.uid !== uid || current.metadata.revision !== revision) {
      this.d.retirer.retireNow([t], "function changed during specialization");
      return undefined;
    }
    this.log.info(
      { function: key, instance: t.id, ms: Math.round(performance.now() - startedAt) },
      "specialized",
    );
    try {
      await this.d.routes.put(t.instance);
    } catch (err) {
      // The instance is real and serving; the periodic reconcile adopts it into Redis later.
      this.log.error(
        { instance: t.id, err: (err as Error).message },
        "could not write the route to Redis",
      );
    }
    return t;
  }

  /**
   * A broken function would otherwise take (and kill) one warm instance per retry until the pool
   * is empty; for a while every lease for that revision gets the same error without trying.
   */
  private rememberLoadFailure(key: string, error: FizzError): void {
    if (this.d.loadFailureTtlMs <= 0) return;
    const now = this.d.now();
    for (const [k, v] of this.loadFailures) if (v.until <= now) this.loadFailures.delete(k);
    this.loadFailures.set(key, { error, until: now + this.d.loadFailureTtlMs });
  }

  private retireFailed(req: LeaseRequest): void {
    const mine = req.failed
      .map((id) => this.d.table.get(id))
      .filter(
        (t): t is Tracked =>
          t !== undefined && t.namespace === req.namespace && t.name === req.function,
      );
    if (mine.length > 0)
      this.d.retirer.retireNow(mine, `gateway ${req.gateway} reported it failed`);
  }
}
