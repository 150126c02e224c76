import { FizzError, type Lease, type LeaseRequest } from "@fizz/events";
import { realClock, retryUntil, tracer, type Clock, type TraceContext } from "@fizz/kit";
import type { Dispatcher } from "undici";
import { CapacityQueues } from "./capacity";
import { FunctionLeases, type LeaseEntry } from "./function-leases";
import type { WaitTicket } from "./wait-queue";

export { FunctionLeases, type LeaseEntry } from "./function-leases";

/**
 * Leases per function, in memory. The warm path is `tryTake`: a synchronous scan of a handful of
 * leases, no promise, no NATS. Only when every lease is full does `acquire` ask the scheduler, and
 * concurrent askers for one function share one request (single flight), so a burst of first
 * requests costs one `scheduler.lease`, not one per request. While requests exceed the held slots
 * it keeps asking (the scheduler scales out) until the scheduler answers NO_CAPACITY (the function
 * is at maxInstances); then requests wait in the function's FIFO queue (`wait-queue.ts`) for a
 * slot, up to a deadline, and the scheduler is asked again at a bounded rate meanwhile.
 */

/** Pauses between asks during an outage: jittered, from 50–100 ms doubling up to 250–500 ms. */
const OUTAGE_PAUSE_BASE_MS = 100;
const OUTAGE_PAUSE_MAX_MS = 500;

/** Errors that mean "a platform service is not answering right now", not "this cannot work". */
function isOutage(err: FizzError): boolean {
  // Not TIMEOUT: a scheduler that answers slowly is not down, and each try would cost a timeout.
  return err.retryable && err.code === "UNAVAILABLE";
}

/** `trace`: the lease span's context, sent in the request's NATS headers (kit's `request`). */
export type LeaseRequester = (req: LeaseRequest, trace: TraceContext | undefined) => Promise<Lease>;

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
  /** How long a request may wait in the queue at the capacity limit (capped by the function timeout). */
  queueTimeoutMs?: number;
  /** Waiting requests per function; past it new ones are refused at once. */
  queueMax?: number;
  /**
   * After NO_CAPACITY, how long new requests queue without asking the scheduler, and how often the
   * scheduler is asked again while requests wait (scale-in or a dead instance may free capacity).
   */
  reaskMs?: number;
  /** Lease requests one caller may go through (scale-out rounds) before it queues. */
  maxRounds?: number;
  /** A fake in unit tests; real time otherwise, whose timers (queue deadlines) keep the process up. */
  clock?: Clock;
  onLeaseRequest?: (outcome: string) => void;
  /** A queued request was refused: `full` (queue at its limit) or `timeout`. */
  onQueueRejected?: (reason: "full" | "timeout") => void;
}

type Options = Required<Omit<LeaseManagerOptions, "onLeaseRequest" | "onQueueRejected">> &
  Pick<LeaseManagerOptions, "onLeaseRequest" | "onQueueRejected">;

export class LeaseManager {
  private readonly functions = new Map<string, FunctionLeases>();
  private touched: LeaseEntry[] = [];
  private readonly opts: Options;
  private readonly capacity: CapacityQueues;

  constructor(opts: LeaseManagerOptions) {
    this.opts = {
      queueTimeoutMs: 10_000,
      queueMax: 1000,
      reaskMs: 250,
      maxRounds: 8,
      clock: realClock,
      ...opts,
    };
    this.capacity = new CapacityQueues({
      queueTimeoutMs: this.opts.queueTimeoutMs,
      queueMax: this.opts.queueMax,
      reaskMs: this.opts.reaskMs,
      clock: this.opts.clock,
      tryTake: (fl) => this.tryTake(fl),
      ask: (fl) => this.ask(fl, undefined),
      onRejected: this.opts.onQueueRejected,
    });
  }

  /** The per-function state; routes hold it, so the hot path needs no map lookup. */
  target(namespace: string, name: string): FunctionLeases {
    const key = `${namespace}/${name}`;
    let fl = this.functions.get(key);
    if (!fl) {
      fl = new FunctionLeases(namespace, name, this.opts.clock);
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
      if (
        !keys.has(key) &&
        fl.leases.length === 0 &&
        fl.pending === undefined &&
        fl.queue.length === 0
      )
        this.functions.delete(key);
    }
  }

  /** Every function's state (metrics read queue lengths at scrape time). */
  all(): IterableIterator<FunctionLeases> {
    return this.functions.values();
  }

  /** Requests waiting in queues, all functions. */
  queued(): number {
    let n = 0;
    for (const fl of this.functions.values()) n += fl.queue.length;
    return n;
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

  /**
   * A slot for one request. `avoid` (a retry after 429 INSTANCE_BUSY) skips that instance and never
   * queues: NO_CAPACITY then goes back to the caller, which answers with the instance's own 429.
   * `ticket.cancel` is set while the request waits in the queue.
   */
  async acquire(
    fl: FunctionLeases,
    avoid?: string,
    ticket?: WaitTicket,
    /** The asking request's trace: a lease request it causes is a span of it. */
    trace?: TraceContext,
  ): Promise<LeaseEntry> {
    // At the limit already (others wait, or NO_CAPACITY just now): queue behind them, FIFO.
    if (avoid === undefined && (fl.queue.length > 0 || this.opts.clock.now() < fl.noCapacityUntil))
      return this.capacity.wait(fl, ticket);
    const outage = { until: 0 };
    for (let round = 0; round < this.opts.maxRounds; round++) {
      let e: LeaseEntry | undefined;
      try {
        e = await this.takeOrAsk(fl, avoid, outage, trace);
      } catch (err) {
        if (avoid !== undefined || !(err instanceof FizzError && err.code === "NO_CAPACITY"))
          throw err;
        break;
      }
      if (e) return e;
      if (avoid === undefined && fl.queue.length > 0) break;
    }
    if (avoid === undefined) return this.capacity.wait(fl, ticket);
    const e = this.tryTake(fl, avoid);
    if (e) return e;
    throw new FizzError(
      "NO_CAPACITY",
      `no other instance of function ${fl.name} in namespace ${fl.namespace} has capacity`,
    );
  }

  /**
   * Gives the slot back; `served` = false when the request never reached the instance. With
   * requests queued, the slot goes straight to the oldest of them (in-flight count unchanged).
   */
  release(e: LeaseEntry, served = true): void {
    if (served) {
      e.served++;
      e.lastUsedAt = this.opts.clock.now();
    }
    if (e.fn.queue.length > 0 && !e.dropped && e.inFlight <= e.slots && e.fn.queue.serveNext(e))
      return;
    e.inFlight--;
  }

  /**
   * Stops handing out a lease; `failed` reports the instance to the scheduler (`failed` of a lease
   * request sent at once).
   */
  drop(e: LeaseEntry, failed: boolean): void {
    if (failed) e.fn.failed.add(e.instanceId);
    if (e.dropped) return;
    e.dropped = true;
    const i = e.fn.leases.indexOf(e);
    if (i >= 0) e.fn.leases.splice(i, 1);
    // Capacity went away under waiting requests: ask for a replacement now, not at the next tick.
    if (e.fn.queue.length > 0) this.capacity.reask(e.fn);
    // The scheduler learns of failed instances from lease requests: ask now, so a hung or dead
    // instance is retired (and replaced) without waiting for the function's next request.
    else if (failed) this.ask(e.fn, undefined).catch(() => undefined);
  }

  /**
   * One scale-out round: a free slot, or else one scheduler ask (undefined when it answered). The
   * scheduler or the poolkeeper being down (crashed, restarting) is ridden out: a request that needs
   * a new instance waits for it to come back, within the queue wait (`outage.until`, set at the
   * first outage of the request), rather than failing; each pause looks for a freed slot again.
   */
  private takeOrAsk(
    fl: FunctionLeases,
    avoid: string | undefined,
    outage: { until: number },
    trace: TraceContext | undefined,
  ): Promise<LeaseEntry | undefined> {
    return retryUntil(
      async () => {
        const e = this.tryTake(fl, avoid);
        if (e) return e;
        await this.ask(fl, avoid, trace);
        return undefined;
      },
      {
        baseMs: OUTAGE_PAUSE_BASE_MS,
        maxMs: OUTAGE_PAUSE_MAX_MS,
        clock: {
          now: () => this.opts.clock.now(),
          // Never past the end of the outage wait: the last try comes at its end.
          sleep: (ms) =>
            this.opts.clock.sleep(Math.max(0, Math.min(ms, outage.until - this.opts.clock.now()))),
        },
        retryable: (err) => {
          if (avoid !== undefined || !(err instanceof FizzError && isOutage(err))) return false;
          const now = this.opts.clock.now();
          outage.until ||= now + this.outageWaitMs(fl);
          return now < outage.until;
        },
      },
    );
  }

  /** How long a request rides out a scheduler or poolkeeper outage: the queue wait, capped by the function timeout. */
  private outageWaitMs(fl: FunctionLeases): number {
    return fl.timeoutMs > 0
      ? Math.min(this.opts.queueTimeoutMs, fl.timeoutMs)
      : this.opts.queueTimeoutMs;
  }

  /** Rejects every queued request and stops re-asking (the gateway stops). */
  close(): void {
    this.capacity.close(this.functions.values());
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
      fl.minRevision = op === "created" ? revision : 0;
      for (const e of [...fl.leases]) this.drop(e, false);
    } else {
      if (revision > fl.minRevision) fl.minRevision = revision;
      for (const e of [...fl.leases]) if (e.revision < fl.minRevision) this.drop(e, false);
    }
    // Waiting requests need the new revision's instances (or the scheduler's NOT_FOUND) now.
    if (fl.queue.length > 0) this.capacity.reask(fl);
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

  /**
   * One scheduler request per function at a time; concurrent askers share it. Resolves true when
   * it added capacity (a new lease, or more slots on a held one).
   */
  private ask(
    fl: FunctionLeases,
    avoid: string | undefined,
    trace?: TraceContext,
  ): Promise<boolean> {
    // Shared by concurrent askers: the lease span belongs to the trace of the one that asked first.
    fl.pending ??= this.fetch(fl, avoid, trace).finally(() => {
      fl.pending = undefined;
    });
    return fl.pending;
  }

  private async fetch(
    fl: FunctionLeases,
    avoid: string | undefined,
    trace: TraceContext | undefined,
  ): Promise<boolean> {
    const exclude = fl.leases.filter((e) => e.inFlight >= e.slots).map((e) => e.instanceId);
    if (avoid !== undefined && !exclude.includes(avoid)) exclude.push(avoid);
    const failed = [...fl.failed];
    const req: LeaseRequest = {
      namespace: fl.namespace,
      function: fl.name,
      gateway: this.opts.gateway,
      exclude,
      failed,
    };
    // The scheduler must not grant a revision older than the one this gateway already knows.
    if (fl.minRevision > 0) req.minRevision = fl.minRevision;
    let lease: Lease;
    const t = tracer();
    const span =
      t.recording && trace !== undefined
        ? t.startSpan("gateway.lease", "client", trace, { "fizz.function": fl.key })
        : undefined;
    try {
      lease = await this.opts.request(req, span?.context ?? trace);
      span?.setAttribute("fizz.instance", lease.instanceId);
    } catch (err) {
      const fe = FizzError.from(err);
      span?.fail(`${fe.code}: ${fe.message}`);
      this.opts.onLeaseRequest?.(fe.code);
      if (fe.code === "NO_CAPACITY") fl.noCapacityUntil = this.opts.clock.now() + this.opts.reaskMs;
      throw fe;
    } finally {
      span?.end();
    }
    this.opts.onLeaseRequest?.("ok");
    for (const id of failed) fl.failed.delete(id);
    const ref = lease.function;
    // A lease for an older revision than we have seen would send traffic to old code: ignore it
    // (the caller's next round asks again).
    if (ref.namespace !== fl.namespace || ref.name !== fl.name || ref.revision < fl.minRevision)
      return false;
    fl.timeoutMs = lease.timeoutMs;
    const held = fl.leases.find((e) => e.instanceId === lease.instanceId);
    if (held && held.address === lease.address && held.revision === ref.revision) {
      const more = lease.slots > held.slots;
      held.slots = lease.slots;
      held.timeoutMs = lease.timeoutMs;
      this.capacity.wake(fl);
      return more;
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
    // Queued requests are older than anyone waiting on this request: they go first.
    this.capacity.wake(fl);
    return true;
  }
}
