import { FizzError } from "@fizz/events";
import { realClock, type Clock, type TraceContext } from "@fizz/kit";
import type { Dispatcher } from "undici";
import { CapacityQueues } from "./capacity";
import { FunctionLeases, type LeaseEntry } from "./function-leases";
import { fetchLease, type LeaseFetchContext, type LeaseRequester } from "./lease-fetch";
import { functionChanged, instancesChanged, type LeaseChangeTarget } from "./lease-changes";
import { rideOutOutage } from "./lease-outage";
import { UsageTracker, type UsageItem } from "./usage-report";
import type { WaitTicket } from "./wait-queue";

export { FunctionLeases, type LeaseEntry } from "./function-leases";
export type { LeaseRequester } from "./lease-fetch";
export type { UsageItem } from "./usage-report";

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

/**
 * Leases per function, in memory. The warm path is `tryTake`: a synchronous scan of a handful of
 * leases, no promise, no NATS. Only when every lease is full does `acquire` ask the scheduler, and
 * concurrent askers for one function share one request (single flight), so a burst of first
 * requests costs one `scheduler.lease`, not one per request. While requests exceed the held slots
 * it keeps asking (the scheduler scales out) until the scheduler answers NO_CAPACITY (the function
 * is at maxInstances); then requests wait in the function's FIFO queue (`wait-queue.ts`) for a
 * slot, up to a deadline, and the scheduler is asked again at a bounded rate meanwhile.
 */
export class LeaseManager {
  private readonly functions = new Map<string, FunctionLeases>();
  private readonly usage = new UsageTracker();
  private readonly opts: Options;
  private readonly capacity: CapacityQueues;
  private readonly fetchContext: LeaseFetchContext;
  private readonly changeTarget: LeaseChangeTarget;

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
    const { gateway, request, dispatcher, clock, reaskMs, onLeaseRequest } = this.opts;
    this.fetchContext = {
      gateway,
      request,
      dispatcher,
      clock,
      reaskMs,
      onLeaseRequest,
      drop: (e, failed) => this.drop(e, failed),
      wake: (fl) => this.capacity.wake(fl),
    };
    this.changeTarget = {
      get: (namespace, name) => this.get(namespace, name),
      drop: (e, failed) => this.drop(e, failed),
      reask: (fl) => this.capacity.reask(fl),
    };
  }

  /** The per-function state; routes hold it, so the hot path needs no map lookup. */
  target(namespace: string, name: string): FunctionLeases {
    const key = `${namespace}/${name}`;
    let fl = this.functions.get(key);
    if (!fl) {
      fl = new FunctionLeases(namespace, name, this.opts.clock);
      // Its own key string, not the lookup's: one string per function kept, not two.
      this.functions.set(fl.key, fl);
    }
    return fl;
  }

  get(namespace: string, name: string): FunctionLeases | undefined {
    return this.functions.get(`${namespace}/${name}`);
  }

  /** Forgets functions no route names any more (`routes`, kept by the route table) that hold nothing. */
  retain(): void {
    for (const [key, fl] of this.functions) {
      if (
        fl.routes === 0 &&
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
    if (failed) e.fn.markFailed(e.instanceId);
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
    return rideOutOutage(
      async () => {
        const e = this.tryTake(fl, avoid);
        if (e) return e;
        await this.ask(fl, avoid, trace);
        return undefined;
      },
      {
        clock: this.opts.clock,
        avoiding: avoid !== undefined,
        outage,
        waitMs: () => this.outageWaitMs(fl),
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
    instancesChanged(this.changeTarget, namespace, name, revision, removed);
  }

  /** `registry.changed.functions`: a new revision drops older leases; a delete drops them all. */
  functionChanged(
    op: "created" | "updated" | "deleted",
    namespace: string,
    name: string,
    revision: number,
  ): void {
    functionChanged(this.changeTarget, op, namespace, name, revision);
  }

  /** Usage since the last call: instances used since then, plus those with requests in flight. */
  takeReport(): UsageItem[] {
    return this.usage.takeReport();
  }

  /** Upstream addresses still needed: held leases and anything with requests in flight. */
  addressesInUse(): Set<string> {
    const set = new Set<string>();
    for (const fl of this.functions.values()) for (const e of fl.leases) set.add(e.address);
    this.usage.addInFlight(set);
    return set;
  }

  private take(e: LeaseEntry): void {
    e.inFlight++;
    this.usage.mark(e);
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
    fl.pending ??= fetchLease(this.fetchContext, fl, avoid, trace).finally(() => {
      fl.pending = undefined;
    });
    return fl.pending;
  }
}
