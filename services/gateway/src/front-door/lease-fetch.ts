import { FizzError, type Lease, type LeaseRequest } from "@fizz/events";
import { tracer, type Clock, type TraceContext } from "@fizz/kit";
import type { Dispatcher } from "undici";
import type { FunctionLeases, LeaseEntry } from "./function-leases";

/** `trace`: the lease span's context, sent in the request's NATS headers (kit's `request`). */
export type LeaseRequester = (req: LeaseRequest, trace: TraceContext | undefined) => Promise<Lease>;

/** What one scheduler ask needs of the lease manager. */
export interface LeaseFetchContext {
  gateway: string;
  request: LeaseRequester;
  dispatcher: (address: string) => Dispatcher;
  clock: Pick<Clock, "now">;
  /** After NO_CAPACITY, how long new requests queue without asking. */
  reaskMs: number;
  onLeaseRequest?: ((outcome: string) => void) | undefined;
  drop(e: LeaseEntry, failed: boolean): void;
  /** Hands new capacity to queued requests first (they are older than anyone waiting on the ask). */
  wake(fl: FunctionLeases): void;
}

/**
 * One `scheduler.lease` for the function, and its answer applied: a new lease, or more slots on
 * one held. Resolves true when it added capacity. Instances whose leases are full are excluded
 * (so the scheduler grants another instance, not the same full one), `avoid` too, and instances
 * that failed since the last ask are reported. A full lease answered with `more` (one slot of a
 * new instance, before the scheduler recorded every share of it) is not excluded but topped up:
 * excluding it would start a second instance for requests the first one has room for. One top-up
 * per lease: if it fails, the next ask excludes the instance.
 */
export async function fetchLease(
  c: LeaseFetchContext,
  fl: FunctionLeases,
  avoid: string | undefined,
  trace: TraceContext | undefined,
): Promise<boolean> {
  const topUp = fl.leases.find(
    (e) => e.more !== undefined && e.inFlight >= e.slots && e.instanceId !== avoid,
  );
  const exclude = fl.leases
    .filter((e) => e.inFlight >= e.slots && e !== topUp)
    .map((e) => e.instanceId);
  if (avoid !== undefined && !exclude.includes(avoid)) exclude.push(avoid);
  const failed = [...fl.failed];
  const req: LeaseRequest = {
    namespace: fl.namespace,
    function: fl.name,
    gateway: c.gateway,
    exclude,
    failed,
    partial: true,
  };
  if (topUp?.more !== undefined) {
    req.topUp = { instanceId: topUp.instanceId, claim: topUp.more };
    topUp.more = undefined;
  }
  // The scheduler must not grant a revision older than the one this gateway already knows.
  if (fl.minRevision > 0) req.minRevision = fl.minRevision;
  let lease: Lease;
  const t = tracer();
  const span =
    t.recording && trace !== undefined
      ? t.startSpan("gateway.lease", "client", trace, { "fizz.function": fl.key })
      : undefined;
  try {
    lease = await c.request(req, span?.context ?? trace);
    span?.setAttribute("fizz.instance", lease.instanceId);
  } catch (err) {
    const fe = FizzError.from(err);
    span?.fail(`${fe.code}: ${fe.message}`);
    c.onLeaseRequest?.(fe.code);
    if (fe.code === "NO_CAPACITY") fl.noCapacityUntil = c.clock.now() + c.reaskMs;
    throw fe;
  } finally {
    span?.end();
  }
  c.onLeaseRequest?.("ok");
  fl.reported(failed);
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
    held.more = lease.more;
    c.wake(fl);
    return more;
  }
  if (held) c.drop(held, false);
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
    more: lease.more,
    pool: c.dispatcher(lease.address),
    fn: fl,
  });
  // Queued requests are older than anyone waiting on this request: they go first.
  c.wake(fl);
  return true;
}
