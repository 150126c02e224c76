import { Codecs, type Subjects, type TimeTrigger } from "@fizz/events";
import { backoffMs, request, sleep, type Logger, type NatsConnection } from "@fizz/kit";
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
  const { nc, catalog, signal } = opts;
  const log = opts.logger.child({ component: "timers" });
  let listing: Promise<void> | undefined;
  const listUntilAnswered = (): Promise<void> => {
    listing ??= (async () => {
      for (let attempt = 0; !signal.aborted; attempt++) {
        catalog.beginListing();
        try {
          const reply = await request(
            nc,
            opts.subjects.registryList,
            Codecs.registryList,
            { kind: "timetriggers" },
            { sender: opts.sender, timeoutMs: opts.timeoutMs },
          );
          const timers = reply.items.filter((o): o is TimeTrigger => o.kind === "TimeTrigger");
          catalog.replaceAll(timers);
          log.info({ timers: timers.length }, "timer triggers listed");
          return;
        } catch (err) {
          catalog.abortListing();
          const wait = backoffMs(attempt, 200, 5000);
          log.warn(
            { err: (err as Error).message, retryInMs: wait },
            "could not list timer triggers from the registry; retrying",
          );
          await sleep(wait, signal);
        }
      }
    })().finally(() => (listing = undefined));
    return listing;
  };

  const synced = listUntilAnswered();
  void (async () => {
    for await (const st of nc.status()) {
      if (signal.aborted) break;
      if (st.type === "reconnect") void listUntilAnswered();
    }
  })();
  return { synced };
}
