import { FizzError, type Lease, type LeaseRequest } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import { instanceConcurrency, timeoutMsOf, type Catalog, type Resolved } from "./catalog";
import { applyFunction, type Model } from "./handlers";
import {
  freeSlots,
  functionKey,
  recordGrant,
  type InstanceTable,
  type Tracked,
} from "./instance-table";
import { phase } from "./phase-span";
import type { Retirer } from "./retirement";
import type { Specializer } from "./specializer";

export interface LeaseDeps {
  catalog: Catalog;
  table: InstanceTable;
  retirer: Retirer;
  specializer: Specializer;
  /** What a registry read (minRevision) applies to, as a change event would. */
  model: Model;
  now: () => number;
  logger: Logger;
}

/**
 * existing: an instance had free slots; specialized: this request started one; joined: it shared
 * another's; topUp: the rest of a lease answered early.
 */
export type LeaseOutcome = "existing" | "specialized" | "joined" | "topUp";
export interface LeaseResult {
  lease: Lease;
  outcome: LeaseOutcome;
}

/**
 * A function that changes revision during every specialization cannot be leased; give up after
 * this many looks. Not a retry (kit's retryUntil): no error is retried and nothing waits; each
 * look starts again from the revision the catalog holds now.
 */
const MAX_ATTEMPTS = 3;

/**
 * scheduler.lease: which instance serves a request for a function, and how many requests the
 * asking gateway may have in flight on it (slots).
 *
 * Capacity is accounted per instance: its concurrency less its load, the load being what each
 * gateway last reported in flight plus the slots granted to it since (loadOf). A lease goes to
 * the instance of the current revision with the most free slots that the gateway did not exclude
 * (its own lease there is full) or report failed, and grants all of them; the answer needs no I/O.
 * Only when every instance is full or excluded is a new one specialized (specializer.ts), shared
 * by up to `concurrency` concurrent lease requests on every scheduler replica, each member granted
 * an even share of its slots. So N concurrent lease requests for a function without instances
 * create ceil(N / concurrency) instances, and a gateway holding N requests, asking again each
 * time its leases are full, ends up with ceil(N / concurrency).
 */
export class LeaseService {
  private readonly refreshing = new Map<string, Promise<void>>();
  private readonly log: Logger;

  constructor(private readonly d: LeaseDeps) {
    this.log = d.logger.child({ component: "lease" });
  }

  get specializationsInFlight(): number {
    return this.d.specializer.inFlight;
  }

  async lease(req: LeaseRequest): Promise<LeaseResult> {
    if (req.failed.length > 0) this.retireFailed(req);
    if (req.topUp) {
      const r = await phase("scheduler.resolve", () => this.resolve(req));
      const got = await this.d.specializer.topUp(r, req.topUp, req.gateway);
      if (got)
        return { lease: this.grant(got.t, r, req.gateway, got.slots, false), outcome: "topUp" };
      // The share cannot be known (the claim expired, on a replica that did not record it; the
      // instance gone; not this gateway's member): an ordinary lease. The instance is not
      // excluded: pick grants its free slots as the accounting knows them (none while the
      // shares are pending or recorded to others), and a gateway that used one slot of it for a
      // while gets the rest there instead of a second instance.
      req = { ...req, topUp: undefined };
    }
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const r = await phase("scheduler.resolve", () => this.resolve(req));
      const picked = this.pick(r, req);
      if (picked) {
        const lease = this.grant(picked.t, r, req.gateway, picked.free, true);
        return { lease, outcome: "existing" };
      }
      const got = await this.d.specializer.acquire(r, req.gateway, req.partial === true);
      // The instance may have died, or the function changed, while we waited: then look again.
      if (got && got.t.revision >= (req.minRevision ?? 0)) {
        const lease = this.grant(got.t, r, req.gateway, got.slots, false);
        if (got.more !== undefined) lease.more = got.more;
        return { lease, outcome: got.outcome };
      }
    }
    throw new FizzError(
      "UNAVAILABLE",
      `function ${req.namespace}/${req.function} kept changing while instances were specialized; ask again`,
    );
  }

  /**
   * The function from the catalog, refreshed from the registry first when the gateway has seen a
   * newer revision (req.minRevision) than the catalog holds: the gateway saw the change event
   * before this replica did, and must not get a lease on the old code.
   */
  private async resolve(req: LeaseRequest): Promise<Resolved> {
    const { namespace, function: name, minRevision } = req;
    const cached = (): Promise<Resolved> | Resolved =>
      this.d.catalog.resolveCached(namespace, name) ?? this.d.catalog.resolve(namespace, name);
    let r = await cached();
    if (minRevision === undefined || r.fn.metadata.revision >= minRevision) return r;
    await this.refresh(namespace, name);
    r = await cached();
    if (r.fn.metadata.revision < minRevision) {
      throw new FizzError(
        "UNAVAILABLE",
        `function ${namespace}/${name}: the registry has revision ${r.fn.metadata.revision}, older than revision ${minRevision} the gateway has seen; ask again`,
      );
    }
    return r;
  }

  /** One registry.get per function at a time, however many leases wait for it. */
  private refresh(namespace: string, name: string): Promise<void> {
    const key = functionKey(namespace, name);
    let p = this.refreshing.get(key);
    if (!p) {
      p = (async () => {
        const obj = await this.d.catalog.fetchFunction(namespace, name);
        const cachedUid = this.d.catalog.fn(namespace, name)?.metadata.uid;
        const op =
          cachedUid !== undefined && cachedUid !== obj.metadata.uid ? "created" : "updated";
        if (applyFunction(this.d.model, op, obj))
          this.log.info(
            { function: key, revision: obj.metadata.revision },
            "a lease named a newer revision; refreshed the function from the registry",
          );
      })().finally(() => this.refreshing.delete(key));
      this.refreshing.set(key, p);
    }
    return p;
  }

  /** The current-revision instance with the most free slots that this gateway may use. */
  private pick(r: Resolved, req: LeaseRequest): { t: Tracked; free: number } | undefined {
    const rev = r.fn.metadata.revision;
    const now = this.d.now();
    let best: { t: Tracked; free: number } | undefined;
    for (const t of this.d.table.ofFunction(req.namespace, req.function)) {
      if (
        t.revision !== rev ||
        t.draining ||
        req.exclude.includes(t.id) ||
        req.failed.includes(t.id) ||
        // Its new members' shares are not recorded yet: its free slots are not known.
        this.d.specializer.sharesPending(t)
      )
        continue;
      const free = freeSlots(t, instanceConcurrency(t, r), now);
      if (free > 0 && (!best || free > best.free)) best = { t, free };
    }
    return best;
  }

  private grant(t: Tracked, r: Resolved, gateway: string, slots: number, record: boolean): Lease {
    const now = this.d.now();
    if (record) recordGrant(t, gateway, slots, now);
    else t.lastUsedAt = Math.max(t.lastUsedAt, now);
    return {
      instanceId: t.id,
      address: t.instance.address,
      function: { namespace: t.namespace, name: t.name, revision: t.revision },
      slots,
      concurrency: instanceConcurrency(t, r),
      timeoutMs: timeoutMsOf(r.fn),
    };
  }

  /**
   * Instances a gateway could not use (refused connection, 421, timeout of a hung function) are
   * out of service at once, retired at the poolkeeper (which kills them), and never handed out or
   * adopted again; the next lease specializes a replacement, and minInstances tops up.
   */
  private retireFailed(req: LeaseRequest): void {
    const mine: Tracked[] = [];
    const unknown: string[] = [];
    for (const id of req.failed) {
      const t = this.d.table.get(id);
      // An id we know under another function is a gateway's mistake: never kill on its word.
      if (t) {
        if (t.namespace === req.namespace && t.name === req.function) mine.push(t);
      } else if (!this.d.table.isTombstoned(id, this.d.now())) unknown.push(id);
    }
    for (const t of mine) this.d.table.condemn(t.id);
    if (mine.length > 0)
      this.d.retirer.retireNow(mine, `gateway ${req.gateway} reported it failed`);
    if (unknown.length > 0) {
      // Leased by another replica that we have not heard of: never lease it here, tell that
      // replica (it checks the function), and let reconcile retire it once the poolkeeper's list
      // confirms it is this function's instance.
      const fn = functionKey(req.namespace, req.function);
      for (const id of unknown) this.d.table.condemn(id, fn);
      this.d.retirer.announceIds(req.namespace, req.function, unknown);
    }
    if (mine.length > 0 || unknown.length > 0)
      this.d.model.minInstances?.check(req.namespace, req.function);
  }
}
