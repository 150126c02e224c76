import { realClock, type Clock } from "@fizz/kit";
import type { Dispatcher } from "undici";
import type { RequestStats } from "./request-stats";
import { WaitQueue } from "./wait-queue";

/** One lease the gateway holds: an instance of a function with `slots` requests' worth of capacity. */
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
  /**
   * Set when the scheduler answered this lease before recording every share of its new instance
   * (Lease.more): once its slots are taken, ask for the rest (a top-up) instead of excluding it.
   */
  more: string | undefined;
  readonly pool: Dispatcher;
  readonly fn: FunctionLeases;
}

export class FunctionLeases {
  readonly key: string;
  /** In acquisition order: first fit packs load onto the oldest instances, so spare ones go idle and get reaped. */
  leases: LeaseEntry[] = [];
  /** The lease request in flight (true when it added capacity), shared by concurrent askers. */
  pending: Promise<boolean> | undefined;
  /** See `failed`; made at the first failure (most functions never see one). */
  private failedIds: Set<string> | undefined;
  /**
   * The newest revision seen (registry event, sync, scheduler): leases on older revisions are
   * refused, and lease requests carry it as `minRevision`.
   */
  minRevision = 0;
  /** After NO_CAPACITY, new requests queue instead of asking the scheduler again per request. */
  noCapacityUntil = 0;
  /** The function's timeout (from its leases or its object); 0 = not known yet. Caps the queue wait. */
  timeoutMs = 0;
  /** Requests waiting for a slot at the capacity limit. */
  readonly queue: WaitQueue<LeaseEntry>;
  /** Cancels the next scheduler re-ask while requests wait; set while one is pending. */
  cancelReask: (() => void) | undefined;
  /** This function's request metrics, attached by GatewayMetrics on first use. */
  stats: RequestStats | undefined;
  /**
   * How many routes of the table point here (the route table counts them): with none, and
   * holding nothing, the lease manager forgets the function (`LeaseManager.retain`).
   */
  routes = 0;

  constructor(
    readonly namespace: string,
    readonly name: string,
    clock: Pick<Clock, "after"> = realClock,
  ) {
    this.key = `${namespace}/${name}`;
    this.queue = new WaitQueue(clock);
  }

  /** Instances that failed for us since the last lease request; the scheduler checks them. */
  get failed(): ReadonlySet<string> {
    return this.failedIds ?? NONE_FAILED;
  }

  markFailed(instanceId: string): void {
    (this.failedIds ??= new Set()).add(instanceId);
  }

  /** The scheduler was told of these; any that failed since stay for the next request. */
  reported(instanceIds: readonly string[]): void {
    const ids = this.failedIds;
    if (ids === undefined) return;
    for (const id of instanceIds) ids.delete(id);
    if (ids.size === 0) this.failedIds = undefined;
  }
}

/**
 * Every function's state exists from its route on (10,000 functions, 10,000 states), most never
 * see a failed instance: they share this empty set instead of an empty Set each (~180 bytes).
 */
const NONE_FAILED: ReadonlySet<string> = new Set();
