import type { FizzError } from "@fizz/events";
import { realClock, type Clock } from "@fizz/kit";

/**
 * The requests of one function waiting for a slot, in arrival order. A function gets here only at
 * its capacity limit (the scheduler answered NO_CAPACITY), so this is the overload path, never the
 * warm one: a request waits until a slot frees on any of the function's leases (the finishing
 * request hands its slot straight to the head of the queue, so a newcomer cannot barge ahead) or a
 * new lease arrives, and gives up at its deadline.
 *
 * Generic over what a waiter is served (`T`, a lease in practice) so that this file imports nothing
 * of the lease manager's: the per-function state holds a queue, and the queue must not know the
 * state (that import was the capacity ↔ leases ↔ function-leases ↔ wait-queue cycle).
 */
export interface Waiter<T> {
  resolve(e: T): void;
  reject(err: FizzError): void;
  /** Cancels the deadline timer. */
  cancelTimer: (() => void) | undefined;
}

/** Filled in by the lease manager while a request waits; the proxy calls it when the client leaves. */
export interface WaitTicket {
  cancel?: (() => void) | undefined;
}

export class WaitQueue<T> {
  /** Made by the first waiter: every function has a queue, few ever queue (at their limit). */
  private items: Waiter<T>[] | undefined;

  constructor(private readonly clock: Pick<Clock, "after"> = realClock) {}

  get length(): number {
    return this.items?.length ?? 0;
  }

  /** Queues a waiter that is rejected with `onTimeout()` after `timeoutMs` unless served first. */
  add(
    resolve: Waiter<T>["resolve"],
    reject: Waiter<T>["reject"],
    timeoutMs: number,
    onTimeout: () => FizzError,
  ): Waiter<T> {
    const w: Waiter<T> = { resolve, reject, cancelTimer: undefined };
    w.cancelTimer = this.clock.after(timeoutMs, () => {
      if (this.remove(w)) reject(onTimeout());
    });
    (this.items ??= []).push(w);
    return w;
  }

  /** Serves the oldest waiter with `e` (whose slot it now holds); false when nobody waits. */
  serveNext(e: T): boolean {
    const w = this.items?.shift();
    if (!w) return false;
    w.cancelTimer?.();
    w.resolve(e);
    return true;
  }

  /** Takes a waiter out (client gone, timed out); false when it was not queued any more. */
  remove(w: Waiter<T>): boolean {
    const i = this.items?.indexOf(w) ?? -1;
    if (i < 0) return false;
    this.items!.splice(i, 1);
    w.cancelTimer?.();
    return true;
  }

  /** Rejects every waiter (the function is gone or broken, or the gateway stops). */
  failAll(err: FizzError): void {
    const items = this.items ?? [];
    this.items = undefined;
    for (const w of items) {
      w.cancelTimer?.();
      w.reject(err);
    }
  }
}
