import { Codecs, type Subjects, type WatchTrigger } from "@fizz/events";
import {
  followRegistryListing,
  listen,
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
 * revision at least as high, or another uid), and a listing does not remove a trigger that an
 * event created after the listing was asked for, nor bring back one deleted meanwhile.
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
  /** Per trigger, when the last event about it arrived, and the uid a delete removed. */
  const touched = new Map<string, { at: number; deletedUid?: string }>();
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
      if (ev.op === "deleted") {
        touched.set(k, { at: Date.now(), deletedUid: ev.object.metadata.uid });
        drop(ev.namespace, ev.name, ev.object.metadata.uid);
      } else {
        touched.set(k, { at: Date.now() });
        put(ev.object);
      }
    },
    { logger: log },
  );

  const apply = (items: WatchTrigger[], listedAt: number): void => {
    const listed = new Set<string>();
    for (const t of items) {
      const k = id(t.metadata.namespace, t.metadata.name);
      listed.add(k);
      const ev = touched.get(k);
      if (ev && ev.at >= listedAt && ev.deletedUid === t.metadata.uid) continue;
      put(t);
    }
    for (const [k, t] of [...known]) {
      const ev = touched.get(k);
      if (listed.has(k) || (ev && ev.at >= listedAt)) continue;
      drop(t.metadata.namespace, t.metadata.name);
    }
    // Older events cannot race a later listing.
    for (const [k, ev] of [...touched]) if (ev.at < listedAt) touched.delete(k);
  };

  const { synced } = followRegistryListing({
    nc,
    subjects: s,
    kind: "watchtriggers",
    sender: opts.sender,
    logger: log,
    signal: opts.signal,
    onList: (items, listedAt) => apply(items, listedAt),
  });

  return { subscription, synced, count: () => known.size };
}
