import { Codecs, type SkippedObject, type Subjects, type WatchTrigger } from "@fizz/events";
import {
  followRegistryListing,
  listen,
  ListingWindow,
  type Logger,
  type NatsConnection,
  type Subscription,
} from "@fizz/kit";

/** Receives the effective set of watch triggers. */
export interface TriggerSink {
  upsert(trigger: WatchTrigger): void;
  remove(namespace: string, name: string): void;
}

export interface TriggerSync {
  subscription: Subscription;
  /** Resolves after the first successful listing (or when stopped before one). */
  synced: Promise<void>;
  /** How many triggers are known (readiness asks Kubernetes only when there are some). */
  count(): number;
}

/**
 * Keeps the watch triggers in step with the registry: `registry.changed.watchtriggers` as it comes,
 * a full `registry.list` at start (retried with back-off: the registry may start after us) and
 * after every NATS reconnect (events published while we were away are lost).
 *
 * A listing and events race: an event may arrive while a listing is in flight and the listing may
 * predate it. So a write only wins when it is not older than what is known (same uid and a
 * revision at least as high, or another uid), and the two merge through kit's `ListingWindow`: a
 * listing does not touch a trigger an event changed after the listing was asked for (nor remove
 * one created, nor bring back one deleted meanwhile), and removes the untouched ones it lacks.
 */
export function syncTriggers(opts: {
  nc: NatsConnection;
  subjects: Subjects;
  sink: TriggerSink;
  sender: string;
  logger: Logger;
  signal: AbortSignal;
}): TriggerSync {
  const log = opts.logger.child({ component: "triggers" });
  const { nc, subjects: s } = opts;
  const known = new Map<string, WatchTrigger>();
  /** Events during a listing win over it. */
  const window = new ListingWindow();
  const id = (ns: string, name: string) => `${ns}/${name}`;

  const put = (t: WatchTrigger): void => {
    const k = id(t.metadata.namespace, t.metadata.name);
    const cur = known.get(k);
    if (cur && cur.metadata.uid === t.metadata.uid && cur.metadata.revision >= t.metadata.revision)
      return;
    known.set(k, t);
    opts.sink.upsert(t);
  };
  const drop = (ns: string, name: string, uid?: string): void => {
    const k = id(ns, name);
    const cur = known.get(k);
    if (!cur || (uid !== undefined && cur.metadata.uid !== uid)) return;
    known.delete(k);
    opts.sink.remove(ns, name);
  };

  // Subscribed before listing, so nothing published in between is missed.
  const subscription = listen(
    nc,
    s.registryChanged("watchtriggers"),
    Codecs.registryChanged,
    (ev) => {
      if (ev.object.kind !== "WatchTrigger") return;
      const k = id(ev.namespace, ev.name);
      log.info({ trigger: k, op: ev.op, revision: ev.revision }, "watch trigger changed");
      window.touch(k);
      if (ev.op === "deleted") drop(ev.namespace, ev.name, ev.object.metadata.uid);
      else put(ev.object);
    },
    { logger: log },
  );

  const apply = (items: WatchTrigger[], skipped: SkippedObject[]): void => {
    // Triggers the registry skipped (could not read) still exist: their informers keep running.
    const merged = window.merge(
      items,
      (t) => id(t.metadata.namespace, t.metadata.name),
      known.keys(),
      skipped,
    );
    for (const t of merged.apply) put(t);
    for (const k of merged.remove) {
      const t = known.get(k);
      if (t) drop(t.metadata.namespace, t.metadata.name);
    }
  };

  const { synced } = followRegistryListing({
    nc,
    subjects: s,
    kind: "watchtriggers",
    sender: opts.sender,
    logger: log,
    signal: opts.signal,
    onAttempt: () => window.begin(),
    onFailure: () => window.abort(),
    onList: (items, { skipped }) => apply(items, skipped),
  });

  return { subscription, synced, count: () => known.size };
}
