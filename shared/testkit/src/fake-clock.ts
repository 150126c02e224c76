import type { Clock } from "@fizz/kit";

interface Timer {
  /** When it falls due, in true time (`t`). */
  at: number;
  /** Creation order: timers due at the same moment fire in the order they were set. */
  seq: number;
  fn: () => void;
}

/**
 * Lets the work already started run as far as it can without time passing: promise chains, and
 * fakes that answer on a later turn of the event loop (setImmediate). No clock time passes.
 */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Time that moves only when the test says so, for code that takes kit's `Clock`: no unit test
 * sleeps, none depends on the machine's speed, and timing claims are exact.
 *
 * `t` is true time. `clock(rate)` hands out a contender's clock running at another rate (a drifting
 * host clock, for the leader election) on the same timeline: its timers fire when true time reaches
 * them. `now`, `after` and `sleep` are bound, so they can be passed on alone.
 */
export class FakeClock implements Clock {
  /** Every delay the code under test asked for (`after` and `sleep`, any rate), in order. */
  readonly delays: number[] = [];
  private readonly timers = new Set<Timer>();
  private seq = 0;

  constructor(public t = 1_000_000) {}

  readonly now = (): number => this.t;

  readonly after = (ms: number, fn: () => void): (() => void) => this.schedule(ms, 1, fn);

  readonly sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
    sleepOn(this.after, ms, signal);

  /** Timers set and neither fired nor cancelled. */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * A clock on this timeline whose time runs `rate` times as fast as true time from now on: its
   * `now` reads the local time, and a delay of `ms` on it lasts `ms / rate` of true time.
   */
  clock(rate = 1): Clock {
    const origin = this.t;
    const after = (ms: number, fn: () => void) => this.schedule(ms, rate, fn);
    return {
      now: () => origin + (this.t - origin) * rate,
      after,
      sleep: (ms, signal) => sleepOn(after, ms, signal),
    };
  }

  /**
   * Moves true time on by `ms`, firing each timer that falls due on the way at its own time, in
   * time order (ties in creation order), and settling the promise work it starts before the next.
   * `each` runs after every timer and once at the end (an invariant checked at every step).
   */
  async advance(ms: number, each?: () => void): Promise<void> {
    const end = this.t + ms;
    await settle();
    for (let next = this.earliest(); next && next.at <= end; next = this.earliest()) {
      this.fire(next);
      await settle();
      each?.();
    }
    this.t = Math.max(this.t, end);
    await settle();
    each?.();
  }

  /** Moves time to the earliest pending timer and fires it (no settling); false when none is. */
  fireNext(): boolean {
    const next = this.earliest();
    if (next) this.fire(next);
    return next !== undefined;
  }

  private schedule(ms: number, rate: number, fn: () => void): () => void {
    this.delays.push(ms);
    const timer: Timer = { at: this.t + Math.max(0, ms) / rate, seq: this.seq++, fn };
    this.timers.add(timer);
    return () => void this.timers.delete(timer);
  }

  private fire(timer: Timer): void {
    this.timers.delete(timer);
    this.t = Math.max(this.t, timer.at);
    timer.fn();
  }

  private earliest(): Timer | undefined {
    let best: Timer | undefined;
    for (const x of this.timers)
      if (!best || x.at < best.at || (x.at === best.at && x.seq < best.seq)) best = x;
    return best;
  }
}

/**
 * Awaits `p`, moving the clock from one timer to the next whenever nothing else can run: time
 * passes exactly as fast as the code under test waits on it.
 */
export async function drive<T>(clock: FakeClock, p: Promise<T>): Promise<T> {
  let done = false;
  const settled = p.then(
    () => (done = true),
    () => (done = true),
  );
  for (;;) {
    await settle();
    if (done) break;
    if (!clock.fireNext()) {
      // Nothing pending on the clock: whatever `p` waits for is not time.
      await settled;
      break;
    }
  }
  return p;
}

/** Kit's sleep contract on a fake `after`: resolves when due, or at once on abort; never rejects. */
function sleepOn(after: Clock["after"], ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      cancel();
      resolve();
    };
    const cancel = after(ms, () => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
