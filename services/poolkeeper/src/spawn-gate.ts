import { FizzError } from "@fizz/events";

/** A cold start (a specialize is waiting for it) or a pool refill. */
export type SpawnPriority = "taken" | "warm";

/** One spawn waiting at the gate. Exactly one of its callbacks is called, once. */
export interface SpawnWaiter<T> {
  priority: SpawnPriority;
  /** The environment; hand-offs go only to waiters of the same key. */
  key: string;
  /**
   * When the caller has surely given up (the gate's clock): an expired waiter is rejected when it
   * would be admitted or handed something, not by a timer of its own.
   */
  deadline?: number;
  /** The caller gave up: the waiter leaves the gate at once (rejected with the signal's reason). */
  signal?: AbortSignal;
  /** A slot is free: spawn, then call `release` (once; more calls are ignored). */
  admit(release: () => void): void;
  /** Something that makes the spawn unnecessary (a warm instance) instead of a slot. */
  handOff?(value: T): void;
  reject(err: FizzError): void;
}

export interface SpawnGateOptions {
  /** Spawns running at once; Infinity (or 0) for no limit (pods start on other nodes). */
  width: number;
  /** The clock deadlines are read on; performance.now by default. */
  now?: (() => number) | undefined;
}

/** What wait() resolves with: a slot (spawn, then release it) or a handed value. */
export type Admission<T> = { release: () => void } | { value: T };

interface Entry<T> {
  w: SpawnWaiter<T>;
  onAbort?: (() => void) | undefined;
}

/**
 * Admits spawns `width` at a time, FIFO, cold starts ahead of refills. Why: with no bound, a burst
 * of first requests boots ~100 loaders at once on two cores, none answers /healthz within the
 * spawn timeout, and every one of them fails; admitted a few at a time they all come up, in turn.
 * A queued spawn holds no timer: its backend spawn (and spawn timeout) starts when it is admitted.
 */
export class SpawnGate<T> {
  private readonly width: number;
  private readonly now: () => number;
  private readonly taken: Array<Entry<T>> = [];
  private readonly warm: Array<Entry<T>> = [];
  private active = 0;
  private stopped = false;

  constructor(opts: SpawnGateOptions) {
    this.width = opts.width > 0 ? opts.width : Infinity;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Spawns admitted and not yet released. */
  get running(): number {
    return this.active;
  }

  /** Waiters queued by priority (expired ones included until they reach the front). */
  get waiting(): Record<SpawnPriority, number> {
    return { taken: this.taken.length, warm: this.warm.length };
  }

  /** The current time on the gate's clock, for deadlines. */
  time(): number {
    return this.now();
  }

  /**
   * Queues a spawn, or admits it at once (synchronously) when a slot is free and nobody waits
   * ahead of it. Returns a cancel function: true when it took the waiter out of the queue (none
   * of its callbacks will be called then).
   */
  enter(w: SpawnWaiter<T>): () => boolean {
    if (this.stopped) {
      w.reject(stoppingError());
      return () => false;
    }
    if (w.signal?.aborted) {
      w.reject(gaveUp(w.signal));
      return () => false;
    }
    const queue = w.priority === "taken" ? this.taken : this.warm;
    const ahead = w.priority === "taken" ? this.taken.length : this.taken.length + this.warm.length;
    if (this.active < this.width && ahead === 0) {
      this.admit({ w });
      return () => false;
    }
    const e: Entry<T> = { w };
    if (w.signal) {
      const signal = w.signal;
      e.onAbort = () => {
        if (this.remove(e)) w.reject(gaveUp(signal));
      };
      signal.addEventListener("abort", e.onAbort, { once: true });
    }
    queue.push(e);
    return () => this.remove(e);
  }

  /** enter() for an async caller: resolves once admitted or handed a value, rejects as enter. */
  wait(
    priority: SpawnPriority,
    key: string,
    opts: { deadline?: number | undefined; signal?: AbortSignal | undefined } = {},
  ): Promise<Admission<T>> {
    return new Promise((resolve, reject) => {
      this.enter({
        priority,
        key,
        ...(opts.deadline !== undefined ? { deadline: opts.deadline } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
        admit: (release) => resolve({ release }),
        handOff: (value) => resolve({ value }),
        reject,
      });
    });
  }

  /**
   * Gives `value` to the oldest live cold-start waiter of `key` instead of a slot. False when
   * none waits (the caller keeps the value: the warm pool).
   */
  handOff(key: string, value: T): boolean {
    const now = this.now();
    for (let i = 0; i < this.taken.length; i++) {
      const e = this.taken[i];
      if (!e || e.w.key !== key || !e.w.handOff) continue;
      if (expired(e.w, now)) continue; // rejected when it reaches the front
      this.taken.splice(i, 1);
      detach(e);
      e.w.handOff(value);
      return true;
    }
    return false;
  }

  /** Rejects every waiter (UNAVAILABLE) and every later enter(); admitted spawns run on. */
  stop(): void {
    this.stopped = true;
    for (const e of [...this.taken.splice(0), ...this.warm.splice(0)]) {
      detach(e);
      e.w.reject(stoppingError());
    }
  }

  private admit(e: Entry<T>): void {
    detach(e);
    this.active++;
    let released = false;
    e.w.admit(() => {
      if (released) return;
      released = true;
      this.active--;
      this.pump();
    });
  }

  /** Admits waiters while slots are free: cold starts first; expired ones are turned away. */
  private pump(): void {
    while (this.active < this.width && !this.stopped) {
      const e = this.taken.shift() ?? this.warm.shift();
      if (!e) return;
      if (expired(e.w, this.now())) {
        detach(e);
        e.w.reject(
          new FizzError("UNAVAILABLE", "no spawn slot before the caller's deadline", {
            retryable: true,
          }),
        );
        continue;
      }
      this.admit(e);
    }
  }

  private remove(e: Entry<T>): boolean {
    const queue = e.w.priority === "taken" ? this.taken : this.warm;
    const i = queue.indexOf(e);
    if (i < 0) return false;
    queue.splice(i, 1);
    detach(e);
    return true;
  }
}

function expired(w: SpawnWaiter<unknown>, now: number): boolean {
  return w.deadline !== undefined && now >= w.deadline;
}

function detach(e: Entry<unknown>): void {
  if (e.onAbort) e.w.signal?.removeEventListener("abort", e.onAbort);
  e.onAbort = undefined;
}

function stoppingError(): FizzError {
  return new FizzError("UNAVAILABLE", "the poolkeeper is stopping", { retryable: true });
}

function gaveUp(signal: AbortSignal): FizzError {
  return new FizzError("UNAVAILABLE", "the caller gave up while waiting for a spawn slot", {
    retryable: true,
    cause: signal.reason,
  });
}
