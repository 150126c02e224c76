import { sleep as realSleep } from "./backoff";

/**
 * Time for timer-driven logic (the leader election, the scheduler's timers and drain periods, the
 * gateway's queue deadlines, the poolkeeper's back-off). Production passes a real clock; unit tests
 * pass @fizz/testkit's FakeClock, so they never sleep and their timing claims are exact. Code that
 * needs only part of it takes `Pick<Clock, ...>`, so a caller can narrow what it must fake.
 */
export interface Clock {
  now(): number;
  /** Calls `fn` after `ms`; the returned function cancels it (a no-op once it ran). */
  after(ms: number, fn: () => void): () => void;
  /** Resolves after `ms`, or at once when `signal` aborts (it never rejects). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/**
 * Real time whose timers keep the process alive, as plain setTimeout does: for work that must
 * happen even when nothing else is pending (a queued request's deadline, a drain period's end).
 */
export const realClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
  sleep: (ms, signal) => realSleep(ms, signal),
};

/**
 * Real time whose `after` timers do not keep the process alive (unref'd): for background upkeep
 * (leader renewals and watchdogs, timer ticks, a pool's back-off) that must not hold up an exit
 * once everything else is done. `sleep` is awaited by a loop that is itself stopped by a signal,
 * so it stays referenced, as it was before the clocks were merged.
 */
export const backgroundClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
  sleep: (ms, signal) => realSleep(ms, signal),
};
