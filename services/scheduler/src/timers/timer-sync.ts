import type { Subjects } from "@fizz/events";
import { followRegistryListing, type Logger, type NatsConnection } from "@fizz/kit";
import type { TimerCatalog } from "./timer-catalog";

export interface TimerListing {
  /** Resolves after the first complete listing (or when stopped before one). */
  synced: Promise<void>;
}

/**
 * Lists timer triggers from the registry until it answers (it may start after us), and again
 * after every NATS reconnect: a change event published while we were away is lost, and a missed
 * delete would leave a timer firing for good. The change events themselves are subscribed by
 * the caller before this starts (subscriptions.ts), so nothing falls between list and events.
 */
export function listTimers(opts: {
  nc: NatsConnection;
  subjects: Subjects;
  catalog: TimerCatalog;
  sender: string;
  timeoutMs: number;
  logger: Logger;
  signal: AbortSignal;
}): TimerListing {
  const { catalog } = opts;
  const { synced } = followRegistryListing({
    nc: opts.nc,
    subjects: opts.subjects,
    kind: "timetriggers",
    sender: opts.sender,
    logger: opts.logger.child({ component: "timers" }),
    signal: opts.signal,
    timeoutMs: opts.timeoutMs,
    onAttempt: () => catalog.beginListing(),
    onFailure: () => catalog.abortListing(),
    onList: (timers, { skipped }) => catalog.replaceAll(timers, skipped),
  });
  return { synced };
}
