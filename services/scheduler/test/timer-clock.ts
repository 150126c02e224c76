import type { Clock } from "@fizz/kit";

/** Lets pending promise callbacks run (no time passes). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

interface Timer {
  at: number;
  fn: () => void;
}

/** Manual time for the timer loop: nothing waits in real time; `advance` fires what falls due. */
export class FakeClock implements Clock {
  private timers: Timer[] = [];
  /** Every delay the code under test asked for, in order. */
  readonly delays: number[] = [];

  constructor(public t: number) {}

  now = (): number => this.t;

  after = (ms: number, fn: () => void): (() => void) => {
    this.delays.push(ms);
    const timer = { at: this.t + ms, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((x) => x !== timer);
    };
  };

  sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
    new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const onAbort = () => (cancel(), resolve());
      const cancel = this.after(
        ms,
        () => (signal?.removeEventListener("abort", onAbort), resolve()),
      );
      signal?.addEventListener("abort", onAbort, { once: true });
    });

  get pending(): number {
    return this.timers.length;
  }

  /** Advances by `ms`, firing due timers in time order and letting their promises settle. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await settle();
    for (;;) {
      const due = this.timers
        .filter((x) => x.at <= end)
        .sort((a, b) => a.at - b.at)
        .at(0);
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
}
