import { backoffMs } from "./backoff";
import { realClock, type Clock } from "./clock";
import type { Logger } from "./logger";

export interface RetryOptions {
  /** First back-off ceiling; each failure doubles it up to `maxMs` (full jitter below the ceiling). */
  baseMs?: number;
  maxMs?: number;
  /** Stops the retrying: the pending wait ends at once and `retryUntil` rejects with `RetryStopped`. */
  signal?: AbortSignal;
  /** At most this many attempts; the last error is then thrown. Unbounded when absent. */
  attempts?: number;
  /** False for an error that retrying cannot mend: it is thrown at once. */
  retryable?: (err: unknown) => boolean;
  /**
   * The wait after this failure instead of the back-off, or undefined for the back-off: for an
   * error that says when trying again is worth it (NATS "no responders" while a peer starts). The
   * back-off counts only its own waits, so it starts from `baseMs` when these end.
   */
  waitFor?: (err: unknown, attempt: number) => number | undefined;
  /** Told of every failure that will be retried, with the wait before the next attempt. */
  onRetry?: (info: RetryInfo) => void;
  /**
   * Where the waits happen and elapsed time is read: a fake in unit tests; a narrowed real clock
   * where a wait must end on another signal than `signal` or stop at a deadline. Real by default.
   */
  clock?: Pick<Clock, "now" | "sleep">;
}

export interface RetryInfo {
  err: unknown;
  /** The attempt that failed, from 0. */
  attempt: number;
  waitMs: number;
  /** Since the first attempt started. */
  elapsedMs: number;
}

/** `retryUntil` was stopped by its signal before an attempt succeeded; `cause` is the last error. */
export class RetryStopped extends Error {
  override readonly name = "RetryStopped";
  constructor(cause: unknown) {
    super("stopped while retrying", { cause });
  }
}

/**
 * The one retry loop: calls `fn` until it resolves, waiting `backoffMs` between failures. Every
 * hand-written loop that once did this drifted (forgotten jitter, a sleep that ignored the stop
 * signal, an attempt counter that never reset); keep new ones here.
 */
export async function retryUntil<T>(
  fn: (attempt: number) => Promise<T>,
  opts: RetryOptions = {},
): Promise<T> {
  const clock = opts.clock ?? realClock;
  const started = clock.now();
  let lastErr: unknown;
  let backoffs = 0;
  for (let attempt = 0; ; attempt++) {
    if (opts.signal?.aborted) throw new RetryStopped(lastErr);
    try {
      return await fn(attempt);
    } catch (err) {
      lastErr = err;
      if (opts.retryable && !opts.retryable(err)) throw err;
      if (opts.attempts !== undefined && attempt + 1 >= opts.attempts) throw err;
      if (opts.signal?.aborted) throw new RetryStopped(err);
      const waitMs =
        opts.waitFor?.(err, attempt) ??
        backoffMs(backoffs++, opts.baseMs ?? 200, opts.maxMs ?? 5_000);
      opts.onRetry?.({ err, attempt, waitMs, elapsedMs: clock.now() - started });
      await clock.sleep(waitMs, opts.signal);
    }
  }
}

/**
 * An `onRetry` for waits that are normal at start-up (a service whose peer is still coming up):
 * debug while the wait is short, one warning once it has lasted `quietMs`, then a warning at most
 * every `quietMs`. `npm start` stays quiet when services come up in their usual order.
 */
export function warnWhenSlow(
  log: Logger,
  message: string,
  fields: Record<string, unknown> = {},
  quietMs = 3_000,
): (info: RetryInfo) => void {
  let warnedAt = -Infinity;
  return ({ err, waitMs, elapsedMs }) => {
    const detail = { ...fields, err: errMessage(err), retryInMs: waitMs, waitedMs: elapsedMs };
    if (elapsedMs >= quietMs && elapsedMs - warnedAt >= quietMs) {
      warnedAt = elapsedMs;
      log.warn(detail, message);
    } else log.debug(detail, message);
  };
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
