/**
 * The timers the lease manager's time-based parts use (queue deadlines, scheduler re-asks, the
 * outage pause). Real ones in production; unit tests inject a fake clock so they run without
 * sleeping and their timing claims are exact.
 */
export type TimerHandle = object;

export interface Timers {
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  // Only handles made by `setTimeout` above reach here.
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout | undefined),
};
