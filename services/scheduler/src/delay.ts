/**
 * Runs `fn` after `ms` and returns the function that cancels it. The scheduler's model waits
 * through this (drain periods, claim polls), so unit tests drive it with a hand-moved clock.
 */
export type After = (ms: number, fn: () => void) => () => void;

export const realAfter: After = (ms, fn) => {
  const timer = setTimeout(fn, ms);
  return () => clearTimeout(timer);
};
