import { FizzError, type ErrorCode } from "@fizz/events";
import type { Clock } from "@fizz/kit";
import type { FunctionLeases, LeaseEntry } from "./function-leases";
import type { WaitTicket } from "./wait-queue";

/**
 * What happens to requests once a function is at its capacity limit (the scheduler answered
 * NO_CAPACITY: maxInstances instances, all full): they wait in the function's FIFO queue for a
 * slot, bounded in time (FIZZ_QUEUE_TIMEOUT_MS, or the function's timeout if smaller) and in
 * length (FIZZ_QUEUE_MAX), then get 429 TOO_MANY_REQUESTS. Meanwhile the scheduler is asked
 * again at a bounded rate, because capacity can come back without any slot freeing here (an
 * instance scaled in or died and can be replaced, another gateway let go of its share).
 *
 * Overflowing onto a full instance instead would only move the queue into the instance, where the
 * runtime's own short queue ends in 429 INSTANCE_BUSY anyway, and without FIFO order or a deadline.
 */
export interface CapacityOptions {
  queueTimeoutMs: number;
  queueMax: number;
  /** The minimum interval between two scheduler asks for a function with waiting requests. */
  reaskMs: number;
  clock: Pick<Clock, "now" | "after">;
  /** A free slot of the function with its slot taken, or undefined. */
  tryTake: (fl: FunctionLeases) => LeaseEntry | undefined;
  /** A lease request for the function (single flight); true when it added capacity. */
  ask: (fl: FunctionLeases) => Promise<boolean>;
  onRejected?: ((reason: "full" | "timeout") => void) | undefined;
}

/** Scheduler errors that may pass while requests wait; any other answers the whole queue. */
const TRANSIENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "NO_CAPACITY",
  "UNAVAILABLE",
  "TIMEOUT",
]);

export class CapacityQueues {
  private closed = false;

  constructor(private readonly o: CapacityOptions) {}

  /** Queues the request until a slot frees, a lease arrives, or its deadline (then 429). */
  wait(fl: FunctionLeases, ticket: WaitTicket | undefined): Promise<LeaseEntry> {
    if (fl.queue.length === 0) {
      // Nobody ahead: a slot freed meanwhile is this request's.
      const e = this.o.tryTake(fl);
      if (e) return Promise.resolve(e);
    }
    const { queueMax, queueTimeoutMs } = this.o;
    const timeoutMs = fl.timeoutMs > 0 ? Math.min(queueTimeoutMs, fl.timeoutMs) : queueTimeoutMs;
    if (this.closed || fl.queue.length >= queueMax || timeoutMs <= 0) {
      this.o.onRejected?.("full");
      return Promise.reject(
        new FizzError(
          "TOO_MANY_REQUESTS",
          `function ${fl.name} in namespace ${fl.namespace} is at its capacity limit and ${fl.queue.length} requests are already waiting; retry later`,
        ),
      );
    }
    return new Promise<LeaseEntry>((resolve, reject) => {
      const w = fl.queue.add(resolve, reject, timeoutMs, () => {
        this.o.onRejected?.("timeout");
        return new FizzError(
          "TOO_MANY_REQUESTS",
          `function ${fl.name} in namespace ${fl.namespace} is at its capacity limit; no slot freed within ${timeoutMs} ms; retry later`,
        );
      });
      if (ticket)
        ticket.cancel = () => {
          if (fl.queue.remove(w)) reject(new FizzError("UNAVAILABLE", "client went away"));
        };
      // The first re-ask when the NO_CAPACITY back-off ends (at once when it was not NO_CAPACITY
      // that sent the request here but the scale-out rounds running out).
      this.schedule(fl, Math.max(0, fl.noCapacityUntil - this.o.clock.now()));
    });
  }

  /** Hands free slots to waiting requests, oldest first (a new lease, more slots). */
  wake(fl: FunctionLeases): void {
    while (fl.queue.length > 0) {
      const e = this.o.tryTake(fl);
      if (!e) return;
      if (!fl.queue.serveNext(e)) {
        e.inFlight--;
        return;
      }
    }
  }

  /**
   * Asks the scheduler now for a function with waiting requests (its leases were dropped, it
   * changed). While it keeps granting capacity and requests still wait, it asks again at once (the
   * function scales out as fast as the scheduler answers); otherwise (NO_CAPACITY, a transient
   * error, a lease it cannot use) at most once per `reaskMs`. An error about the function itself (deleted, fails to load)
   * answers every waiting request.
   */
  reask(fl: FunctionLeases): void {
    fl.cancelReask?.();
    fl.cancelReask = undefined;
    if (fl.queue.length === 0 || this.closed) return;
    this.o.ask(fl).then(
      (gained) => {
        this.wake(fl);
        this.schedule(fl, gained ? 0 : this.o.reaskMs);
      },
      (err: unknown) => {
        const fe = FizzError.from(err);
        if (!TRANSIENT.has(fe.code)) fl.queue.failAll(fe);
        this.schedule(fl, this.o.reaskMs);
      },
    );
  }

  /** Rejects every queued request and stops re-asking (the gateway stops). */
  close(functions: Iterable<FunctionLeases>): void {
    this.closed = true;
    for (const fl of functions) {
      fl.cancelReask?.();
      fl.cancelReask = undefined;
      fl.queue.failAll(new FizzError("UNAVAILABLE", "the gateway is stopping"));
    }
  }

  private schedule(fl: FunctionLeases, delayMs: number): void {
    if (fl.cancelReask !== undefined || this.closed || fl.queue.length === 0) return;
    fl.cancelReask = this.o.clock.after(delayMs, () => this.reask(fl));
  }
}
