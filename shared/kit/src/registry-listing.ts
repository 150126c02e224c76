import {
  Codecs,
  type KindPlural,
  type ObjectsByPlural,
  type SkippedObject,
  type Subjects,
} from "@fizz/events";
import { retryUntil, RetryStopped, warnWhenSlow } from "./retry";
import type { Logger } from "./logger";
import { request, type NatsConnection } from "./nats";

/** Objects per `registry.list` page: a few hundred KB, well under NATS max_payload. */
const LIST_PAGE = 500;

/**
 * While nothing answers `registry.list` (the registry not subscribed yet: every service starts at
 * once after a restart), ask again this often, for up to this long, before the back-off takes
 * over. "No responders" comes back from the NATS server at once and costs the registry nothing,
 * whereas the back-off's growing waits (up to 2 s by the fourth attempt) were most of the time a
 * restarted service spent waiting for a registry that was already up.
 */
const NO_RESPONDERS_POLL_MS = 50;
const NO_RESPONDERS_POLL_FOR_MS = 10_000;

/** The NATS server said no one subscribes to the subject (kit's `request` keeps it as the cause). */
function noResponders(err: unknown): boolean {
  const cause = (err as { cause?: { isNoResponders?: () => boolean } } | null)?.cause;
  return typeof cause?.isNoResponders === "function" && cause.isNoResponders();
}

/**
 * Keeps a service's copy of one registry kind whole: lists it at start, retrying with back-off
 * until the registry answers (it may start later), and lists it again after every NATS reconnect,
 * because change events published while the service was disconnected are lost. Concurrent asks
 * (`relist`) share one listing. A reconnect while a listing is in flight schedules one more after
 * it (several coalesce into one): that listing's request may have been answered before the second
 * disconnect, so it cannot hold what changed during it.
 *
 * Merge the answer with the events that cross it through a `ListingWindow` (listing-window.ts):
 * `onAttempt` before each request, `onFailure` after a failed one, `onList` with the items and
 * what the registry left out (`skipped`: stored objects it could not read, which still exist), to
 * pass on as `merge`'s last argument so they are not taken for deleted. A listing that skipped
 * some is logged here as a warning, once per listing.
 */
export interface RegistryListing {
  /** Objects the registry left out of the listing because it could not read them (not deleted). */
  skipped: SkippedObject[];
}

export function followRegistryListing<K extends KindPlural>(opts: {
  nc: NatsConnection;
  subjects: Subjects;
  kind: K;
  sender: string;
  logger: Logger;
  signal: AbortSignal;
  onList: (items: ObjectsByPlural[K][], listing: RegistryListing) => void;
  /** Called before each attempt and after a failed one (a `ListingWindow`'s begin and abort). */
  onAttempt?: () => void;
  onFailure?: () => void;
  timeoutMs?: number;
}): { synced: Promise<void>; relist(): Promise<void> } {
  const { nc, kind, logger: log, signal } = opts;
  let listing: Promise<void> | undefined;
  /** A reconnect landed while `listing` was in flight: list once more after it. */
  let again = false;
  const listOnce = async (): Promise<void> => {
    // The registry starting after this service is the normal order: quiet unless slow.
    const waiting = warnWhenSlow(log, "waiting for the registry to list", { kind });
    let pollUntil: number | undefined;
    try {
      await retryUntil(
        async () => {
          opts.onAttempt?.();
          try {
            // Page by page: one reply must fit NATS max_payload (1 MB by default), and 10,000
            // functions are several MB. A registry that predates pagination answers everything
            // at once, without `continue`, which ends the loop.
            const items: ObjectsByPlural[K][] = [];
            const skipped: SkippedObject[] = [];
            let token: string | undefined;
            do {
              const reply = await request(
                nc,
                opts.subjects.registryList,
                Codecs.registryList,
                { kind, limit: LIST_PAGE, ...(token !== undefined ? { continue: token } : {}) },
                { sender: opts.sender, timeoutMs: opts.timeoutMs ?? 5_000 },
              );
              // The reply holds objects of the asked kind; the cast states what the registry
              // guarantees.
              for (const item of reply.items as ObjectsByPlural[K][]) items.push(item);
              for (const s of reply.skipped ?? []) skipped.push(s);
              // Each page ends past the one before, so a token never comes back; a registry
              // answering the same one again would keep this loop asking and growing forever.
              if (reply.continue !== undefined && reply.continue === token)
                throw new Error("the registry answered a listing page with the token it was given");
              token = reply.continue;
            } while (token !== undefined);
            opts.onList(items, { skipped });
            log.info({ kind, count: items.length }, "listed from the registry");
            if (skipped.length > 0)
              log.warn(
                {
                  kind,
                  kept: skipped.length,
                  // The first few: in a rollout every object of a kind may be skipped.
                  objects: skipped.slice(0, 10).map((o) => `${o.namespace}/${o.name}`),
                },
                "the registry left objects it cannot read out of its listing: kept as they are here, not deleted",
              );
          } catch (err) {
            opts.onFailure?.();
            throw err;
          }
        },
        {
          baseMs: 250,
          maxMs: 5_000,
          signal,
          // The fast re-asking ends this long after the first "no responders" of this listing,
          // not of each attempt: a service whose registry stays down would otherwise ask 20
          // times a second forever.
          waitFor: (err) => {
            if (!noResponders(err)) return undefined;
            const now = Date.now();
            pollUntil ??= now + NO_RESPONDERS_POLL_FOR_MS;
            return now < pollUntil ? NO_RESPONDERS_POLL_MS : undefined;
          },
          onRetry: waiting,
        },
      );
    } catch (err) {
      // Stopped: the service is shutting down, and `synced` resolves as it always did.
      if (!(err instanceof RetryStopped)) throw err;
    }
  };
  const relist = (): Promise<void> => {
    listing ??= (async () => {
      try {
        do {
          again = false;
          await listOnce();
        } while (again && !signal.aborted);
      } finally {
        listing = undefined;
      }
    })();
    return listing;
  };
  const synced = relist();
  void (async () => {
    for await (const st of nc.status()) {
      if (st.type !== "reconnect" || signal.aborted) continue;
      if (listing) again = true;
      else void relist();
    }
  })();
  return { synced, relist };
}
