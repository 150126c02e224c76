import type { After } from "../src/delay";

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * The unit tests' time: `now` and the timers the model waits on (drain periods, claim polls)
 * move only when the test says so, so no test sleeps and none depends on the machine's speed.
 */
export class ManualClock {
  private readonly pending = new Map<number, Pending>();
  private seq = 0;

  constructor(public t = 1_000_000) {}

  readonly now = (): number => this.t;

  readonly after: After = (ms, fn) => {
    const seq = ++this.seq;
    this.pending.set(seq, { at: this.t + Math.max(0, ms), seq, fn });
    return () => this.pending.delete(seq);
  };

  /** Resolves once this clock has moved `ms` on (a fake that takes time, e.g. a slow specialize). */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.after(ms, resolve));
  }

  /** Moves time on by `ms`, firing each timer that falls due at its own time, earliest first. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (let next = this.earliest(); next && next.at <= end; next = this.earliest())
      this.fire(next);
    this.t = end;
  }

  /** Moves time to the earliest pending timer and fires it; false when none is pending. */
  fireNext(): boolean {
    const next = this.earliest();
    if (next) this.fire(next);
    return next !== undefined;
  }

  private fire(p: Pending): void {
    this.pending.delete(p.seq);
    this.t = Math.max(this.t, p.at);
    p.fn();
  }

  private earliest(): Pending | undefined {
    let best: Pending | undefined;
    for (const p of this.pending.values())
      if (!best || p.at < best.at || (p.at === best.at && p.seq < best.seq)) best = p;
    return best;
  }
}

/**
 * Lets the work already started run as far as it can without time passing: promise chains, and
 * fakes that answer on a later turn of the event loop. No clock time passes.
 */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Awaits `p`, moving the clock from one timer to the next whenever nothing else can run: time
 * passes exactly as fast as the code under test waits on it.
 */
export async function drive<T>(clock: ManualClock, p: Promise<T>): Promise<T> {
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
