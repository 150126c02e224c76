import { FizzError } from "@fizz/events";
import { retryUntil, type Clock } from "@fizz/kit";

/** Pauses between asks during an outage: jittered, from 50–100 ms doubling up to 250–500 ms. */
const OUTAGE_PAUSE_BASE_MS = 100;
const OUTAGE_PAUSE_MAX_MS = 500;

/** Errors that mean "a platform service is not answering right now", not "this cannot work". */
function isOutage(err: FizzError): boolean {
  // Not TIMEOUT: a scheduler that answers slowly is not down, and each try would cost a timeout.
  return err.retryable && err.code === "UNAVAILABLE";
}

/**
 * Runs `round` (a free slot, or one scheduler ask) again while the scheduler or the poolkeeper is
 * down (crashed, restarting): a request that needs a new instance waits for it to come back,
 * within `waitMs` from the first outage of the request (`outage.until`, kept by the caller across
 * scale-out rounds), rather than failing; each pause looks for a freed slot again. A retry that
 * avoids an instance (`avoiding`) never waits: it answers with that instance's own 429.
 */
export function rideOutOutage<T>(
  round: () => Promise<T>,
  o: {
    clock: Pick<Clock, "now" | "sleep">;
    avoiding: boolean;
    outage: { until: number };
    waitMs: () => number;
  },
): Promise<T> {
  const { clock, outage } = o;
  return retryUntil(round, {
    baseMs: OUTAGE_PAUSE_BASE_MS,
    maxMs: OUTAGE_PAUSE_MAX_MS,
    clock: {
      now: () => clock.now(),
      // Never past the end of the outage wait: the last try comes at its end.
      sleep: (ms) => clock.sleep(Math.max(0, Math.min(ms, outage.until - clock.now()))),
    },
    retryable: (err) => {
      if (o.avoiding || !(err instanceof FizzError && isOutage(err))) return false;
      const now = clock.now();
      outage.until ||= now + o.waitMs();
      return now < outage.until;
    },
  });
}
