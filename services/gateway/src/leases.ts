import { FizzError, type Lease, type LeaseRequest } from "@fizz/events";
import type { Dispatcher } from "undici";

/**
 * Leases per function, in memory. The warm path is `tryTake`: a synchronous scan of a handful of
 * leases, no promise, no NATS. Only when every lease is full does `acquire` ask the scheduler, and
 * concurrent askers for one function share one request (single flight), so a burst of first
 * requests costs one `scheduler.lease`, not one per request.
 */

export interface LeaseEntry {
  readonly instanceId: string;
  readonly address: string;
  readonly revision: number;
  /** Sent as X-Fizz-Function-Revision; kept as text so the hot path does not format numbers. */
  readonly revisionText: string;
  slots: number;
  timeoutMs: number;
  inFlight: number;
  /** Requests finished since the last usage report. */
  served: number;
  lastUsedAt: number;
  /** No new requests go here; in-flight ones finish. */
  dropped: boolean;
  /** Listed in the next usage report. */
  touched: boolean;
  readonly pool: Dispatcher;
  readonly fn: FunctionLeases;
}

export class FunctionLeases {
  readonly key: string;
  /** In acquisition order: first fit packs load onto the oldest instances, so spare ones go idle and get reaped. */
  leases: LeaseEntry[] = [];
  pending: Promise<void> | undefined;
  /** Instances that failed for us since the last lease request; the scheduler checks them. */
  readonly failed = new Set<string>();
  /** Leases on older revisions are refused (no request may reach old code after an update is seen). */
  minRevision = 0;
  /** After NO_CAPACITY, overflow onto held leases for a moment instead of asking again per request. */
  noCapacityUntil = 0;

  constructor(
    readonly namespace: string,
    readonly name: string,
  ) {
    this.key = `${namespace}/${name}`;
  }
}

export type LeaseRequester = (req: LeaseRequest) => Promise<Lease>;

export interface UsageItem {
  instanceId: string;
  namespace: string;
  function: string;
  inFlight: number;
  served: number;
  lastUsedAt: number;
}

export interface LeaseManagerOptions {
  gateway: string;
  request: LeaseRequester;
  dispatcher: (address: string) => Dispatcher;
  /** How long NO_CAPACITY stops lease requests for a function. */
  noCapacityBackoffMs?: number;
  /** Lease requests one caller may wait through before overflowing onto a held lease. */
  maxRounds?: number;
  now?: () => number;
  onLeaseRequest?: (outcome: string) => void;
}

export class LeaseManager {
  private readonly functions = new Map<string, FunctionLeases>();
  private touched: LeaseEntry[] = [];
  private readonly opts: Required<Omit<LeaseManagerOptions, "onLeaseRequest">> &
    Pick<LeaseManagerOptions, "onLeaseRequest">;

  constructor(opts: LeaseManagerOptions) {
    this.opts = { noCapacityBackoffMs: 250, maxRounds: 8, now: Date.now, ...opts };
  }

  /** The per-function state; routes hold it, so the hot path needs no map lookup. */
  target(namespace: string, name: string): FunctionLeases {
    const key = `${namespace}/${name}`;
    let fl = this.functions.get(key);
    if (!fl) {
      fl = new FunctionLeases(namespace, name);
      this.functions.set(key, fl);
    }
    return fl;
  }

  get(namespace: string, name: string): FunctionLeases | undefined {
    return this.functions.get(`${namespace}/${name}`);
  }

  /** Forgets functions no route names any more (and that hold nothing). */
  retain(keys: ReadonlySet<string>): void {
    for (const [key, fl] of this.functions) {
      if (!keys.has(key) && fl.leases.length === 0 && fl.pending === undefined)
        this.functions.delete(key);
    }
  }

  /** A lease with a free slot (its slot taken), or undefined. `avoid` skips one instance. */
  tryTake(fl: FunctionLeases, avoid?: string): LeaseEntry | undefined {
    const leases = fl.leases;
    for (let i = 0; i < leases.length; i++) {
      const e = leases[i] as LeaseEntry;
      if (e.inFlight < e.slots && e.instanceId !== avoid) {
        this.take(e);
        return e;
      }
    }
    return undefined;
  }

  async acquire(fl: FunctionLeases, avoid?: string): Promise<LeaseEntry> {
    for (let round = 0; ; round++) {
      const e = this.tryTake(fl, avoid);
      if (e) return e;
      if (round >= this.opts.maxRounds || this.opts.now() < fl.noCapacityUntil) break;
      fl.pending ??= this.fetch(fl, avoid).finally(() => {
        fl.pending = undefined;
      });
      try {
        await fl.pending;
      } catch (err) {
        if (!(err instanceof FizzError && err.code === "NO_CAPACITY")) throw err;
        const o = this.overflow(fl, avoid);
        if (o) return o;
        throw err;
      }
    }
    const o = this.overflow(fl, avoid);
    if (o) return o;
    throw new FizzError(
      "NO_CAPACITY",
      `no capacity for function ${fl.name} in namespace ${fl.namespace}`,
    );
  }

  /** Gives the slot back; `served` = false when the request never reached the instance. */
  release(e: LeaseEntry, served = true): void {
    e.inFlight--;
    if (!served) return;
    e.served++;
    e.lastUsedAt = this.opts.now();
  }

  /** Stops handing out a lease; `failed` reports the instance on the next lease request. */
  drop(e: LeaseEntry, failed: boolean): void {
    if (failed) e.fn.failed.add(e.instanceId);
    if (e.dropped) return;
    e.dropped = true;
    const i = e.fn.leases.indexOf(e);
    if (i >= 0) e.fn.leases.splice(i, 1);
  }

  /** `scheduler.instances.<ns>.<fn>`: instances removed, or the function moved to a new revision. */
  instancesChanged(
    namespace: string,
    name: string,
    revision: number,
    removed: readonly string[],
  ): void {
    const fl = this.get(namespace, name);
    if (!fl) return;
    if (revision > fl.minRevision) fl.minRevision = revision;
    for (const e of [...fl.leases]) {
      if (e.revision < fl.minRevision || removed.includes(e.instanceId)) this.drop(e, false);
    }
  }

  /** `registry.changed.functions`: a new revision drops older leases; a delete drops them all. */
  functionChanged(
    op: "created" | "updated" | "deleted",
    namespace: string,
    name: string,
    revision: number,
  ): void {
    const fl = this.get(namespace, name);
    if (!fl) return;
    if (op === "deleted" || op === "created") {
      // A re-created function starts its revisions again; leases of the old one are all stale.
      for (const e of [...fl.leases]) this.drop(e, false);
      fl.minRevision = op === "created" ? revision : 0;
      return;
    }
    if (revision > fl.minRevision) fl.minRevision = revision;
    for (const e of [...fl.leases]) if (e.revision < fl.minRevision) this.drop(e, false);
  }

  /** Usage since the last call: instances used since then, plus those with requests in flight. */
  takeReport(): UsageItem[] {
    const items: UsageItem[] = [];
    const keep: LeaseEntry[] = [];
    for (const e of this.touched) {
      items.push({
        instanceId: e.instanceId,
        namespace: e.fn.namespace,
        function: e.fn.name,
        inFlight: e.inFlight,
        served: e.served,
        lastUsedAt: e.lastUsedAt,
      });
      e.served = 0;
      if (e.inFlight > 0) keep.push(e);
      else e.touched = false;
    }
    this.touched = keep;
    return items;
  }

  /** Upstream addresses still needed: held leases and anything with requests in flight. */
  addressesInUse(): Set<string> {
    const set = new Set<string>();
    for (const fl of this.functions.values()) for (const e of fl.leases) set.add(e.address);
    for (const e of this.touched) if (e.inFlight > 0) set.add(e.address);
    return set;
  }

  private take(e: LeaseEntry): void {
    e.inFlight++;
    if (!e.touched) {
      e.touched = true;
      this.touched.push(e);
    }
  }

  /** Least-loaded held lease, past its slots: the instance's own queue (then 429) is the hard limit. */
  private overflow(fl: FunctionLeases, avoid: string | undefined): LeaseEntry | undefined {
    let best: LeaseEntry | undefined;
    for (const e of fl.leases) {
      if (e.instanceId === avoid) continue;
      if (!best || e.inFlight / e.slots < best.inFlight / best.slots) best = e;
    }
    if (best) this.take(best);
    return best;
  }

  private async fetch(fl: FunctionLeases, avoid: string | undefined): Promise<void> {
    const exclude = fl.leases.filter((e) => e.inFlight >= e.slots).map((e) => e.instanceId);
    if (avoid !== undefined && !exclude.includes(avoid)) exclude.push(avoid);
    const failed = [...fl.failed];
    let lease: Lease;
    try {
      lease = await this.opts.request({
        namespace: fl.namespace,
        function: fl.name,
        gateway: this.opts.gateway,
        exclude,
        failed,
      });
    } catch (err) {
      const fe = FizzError.from(err);
      this.opts.onLeaseRequest?.(fe.code);
      if (fe.code === "NO_CAPACITY")
        fl.noCapacityUntil = this.opts.now() + this.opts.noCapacityBackoffMs;
      throw fe;
    }
    this.opts.onLeaseRequest?.("ok");
    for (const id of failed) fl.failed.delete(id);
    const ref = lease.function;
    // A lease for an older revision than we have seen would send traffic to old code: ignore it
    // (the caller's next round asks again).
    if (ref.namespace !== fl.namespace || ref.name !== fl.name || ref.revision < fl.minRevision)
      return;
    const held = fl.leases.find((e) => e.instanceId === lease.instanceId);
    if (held && held.address === lease.address && held.revision === ref.revision) {
      held.slots = lease.slots;
      held.timeoutMs = lease.timeoutMs;
      return;
    }
    if (held) this.drop(held, false);
    fl.leases.push({
      instanceId: lease.instanceId,
      address: lease.address,
      revision: ref.revision,
      revisionText: String(ref.revision),
      slots: lease.slots,
      timeoutMs: lease.timeoutMs,
      inFlight: 0,
      served: 0,
      lastUsedAt: 0,
      dropped: false,
      touched: false,
      pool: this.opts.dispatcher(lease.address),
      fn: fl,
    });
  }
}
