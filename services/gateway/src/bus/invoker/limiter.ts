import { FizzError } from "@fizz/events";
import type { FunctionLeases } from "../../front-door/index";

/**
 * How much bus-originated work (async invocations, timers, watches, mq triggers) one gateway runs
 * at once: at most `maxTotal` calls overall (FIZZ_INVOKER_MAX_INFLIGHT), and per function at most
 * `limitOf(fn)` — half of what the function can take from this gateway (see start-bus.ts) — so a
 * backlog of queued calls can never hold every slot of a function: HTTP requests always find the
 * other half. Calls past a limit wait here in one FIFO (oldest first, across functions), which
 * the JetStream pullers keep short by fetching only what fits (`free`, `freeFor`).
 */
interface Waiter {
  fl: FunctionLeases;
  resolve: () => void;
  reject: (err: FizzError) => void;
}

export class BusLimiter {
  private total = 0;
  private readonly running = new Map<FunctionLeases, number>();
  private readonly waiting = new Map<FunctionLeases, number>();
  private queue: Waiter[] = [];
  private readonly listeners = new Set<() => void>();

  constructor(
    readonly maxTotal: number,
    private readonly limitOf: (fl: FunctionLeases) => number,
  ) {}

  /** Calls running now, all functions. */
  get inFlight(): number {
    return this.total;
  }

  /** Calls waiting for a slot, all functions. */
  get queued(): number {
    return this.queue.length;
  }

  /** A function's share (calls of it that may run at once). */
  limit(fl: FunctionLeases): number {
    return this.limitOf(fl);
  }

  /**
   * Calls of a function a puller may hold: its share running and as many again waiting for a slot
   * of it (a freed slot is taken at once, not after a redelivery delay or a pull). The invoker
   * hands messages past it back to the stream, so one busy function cannot fill the pull window
   * for all others.
   */
  backlog(fl: FunctionLeases): number {
    return 2 * this.limitOf(fl);
  }

  /** Slots neither running nor promised to a waiting call. */
  free(): number {
    return Math.max(0, this.maxTotal - this.total - this.queue.length);
  }

  /** The same for one function (its own limit; the total is `free`). */
  freeFor(fl: FunctionLeases): number {
    return Math.max(
      0,
      this.limitOf(fl) - (this.running.get(fl) ?? 0) - (this.waiting.get(fl) ?? 0),
    );
  }

  /** Calls of one function running or waiting here. */
  heldBy(fl: FunctionLeases): number {
    return (this.running.get(fl) ?? 0) + (this.waiting.get(fl) ?? 0);
  }

  /** A slot for one call of `fl`; `maxWaiting` bounds the calls of `fl` waiting (past it: 429). */
  acquire(fl: FunctionLeases, maxWaiting = Number.MAX_SAFE_INTEGER): Promise<void> {
    // A function's share may have grown since (a lease with more slots): let waiters in first.
    if (this.queue.length > 0) this.grant();
    const waiting = this.waiting.get(fl) ?? 0;
    // Waiters left now are blocked by their own function's share, so they are not passed over
    // unless one of them is of this function.
    if (waiting === 0 && this.fits(fl)) {
      this.take(fl);
      return Promise.resolve();
    }
    if (waiting >= maxWaiting) {
      return Promise.reject(
        new FizzError(
          "TOO_MANY_REQUESTS",
          `function ${fl.name} in namespace ${fl.namespace} has ${waiting} bus calls waiting already`,
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(fl, waiting + 1);
      this.queue.push({ fl, resolve, reject });
    });
  }

  release(fl: FunctionLeases): void {
    this.total--;
    const n = (this.running.get(fl) ?? 1) - 1;
    if (n > 0) this.running.set(fl, n);
    else this.running.delete(fl);
    this.grant();
    for (const l of this.listeners) l();
  }

  /** Called after every release (pullers fetch more). */
  onRelease(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Rejects every waiting call (the gateway stops). */
  close(err: FizzError): void {
    const q = this.queue;
    this.queue = [];
    this.waiting.clear();
    for (const w of q) w.reject(err);
  }

  private fits(fl: FunctionLeases): boolean {
    return this.total < this.maxTotal && (this.running.get(fl) ?? 0) < this.limitOf(fl);
  }

  private take(fl: FunctionLeases): void {
    this.total++;
    this.running.set(fl, (this.running.get(fl) ?? 0) + 1);
  }

  /** Oldest first; a waiter whose function is at its limit does not block the others. */
  private grant(): void {
    for (let i = 0; i < this.queue.length && this.total < this.maxTotal;) {
      const w = this.queue[i] as Waiter;
      if (!this.fits(w.fl)) {
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      const n = (this.waiting.get(w.fl) ?? 1) - 1;
      if (n > 0) this.waiting.set(w.fl, n);
      else this.waiting.delete(w.fl);
      this.take(w.fl);
      w.resolve();
    }
  }
}
