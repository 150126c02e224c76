import type { RegistryChanged, SkippedObject, TimeTrigger } from "@fizz/events";
import { ListingWindow } from "@fizz/kit";

export type TimerChange =
  { op: "put"; trigger: TimeTrigger } | { op: "removed"; namespace: string; name: string };

const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;

/**
 * Timer triggers, from registry.list and registry.changed.timetriggers, telling the timer loop
 * what changed. Like the function catalog, a write wins only when it is not older than what is
 * held (same uid and a lower revision loses; another uid is a new incarnation). A listing and
 * events can cross, and merge through kit's `ListingWindow`: an event that arrives while a listing
 * is on its way is newer than the listing for that timer, so the listing does not overwrite what
 * the event said (nor bring back a timer the event deleted); a timer the listing lacks that no
 * event touched was deleted while events were lost, and is removed.
 */
export class TimerCatalog {
  private readonly triggers = new Map<string, TimeTrigger>();
  /** Timers changed by an event since the listing in flight was requested win over it. */
  private readonly window = new ListingWindow();

  constructor(private readonly onChange: (change: TimerChange) => void) {}

  all(): Iterable<TimeTrigger> {
    return this.triggers.values();
  }

  get size(): number {
    return this.triggers.size;
  }

  get(namespace: string, name: string): TimeTrigger | undefined {
    return this.triggers.get(keyOf(namespace, name));
  }

  /** registry.changed.timetriggers. */
  apply(ev: RegistryChanged): void {
    const obj = ev.object;
    if (obj.kind !== "TimeTrigger") return;
    this.window.touch(keyOf(obj.metadata.namespace, obj.metadata.name));
    if (ev.op === "deleted") this.remove(obj);
    else this.put(obj);
  }

  /** Call before sending registry.list; pass the answer to `replaceAll`. */
  beginListing(): void {
    this.window.begin();
  }

  /**
   * The registry's full list: adds and updates what it holds, removes what it no longer does
   * (except what it `skipped`: timers it could not read, which still exist).
   */
  replaceAll(items: TimeTrigger[], skipped: SkippedObject[] = []): void {
    const { apply, remove } = this.window.merge(
      items,
      (t) => keyOf(t.metadata.namespace, t.metadata.name),
      this.triggers.keys(),
      skipped,
    );
    for (const t of apply) this.put(t);
    for (const key of remove) {
      const t = this.triggers.get(key)!;
      this.triggers.delete(key);
      this.onChange({ op: "removed", namespace: t.metadata.namespace, name: t.metadata.name });
    }
  }

  /** A listing that failed: events are again the only news. */
  abortListing(): void {
    this.window.abort();
  }

  private put(obj: TimeTrigger): void {
    const key = keyOf(obj.metadata.namespace, obj.metadata.name);
    const cur = this.triggers.get(key);
    // Equal revision of the same incarnation: nothing changed (a relist), so nothing is re-armed.
    if (
      cur &&
      cur.metadata.uid === obj.metadata.uid &&
      cur.metadata.revision >= obj.metadata.revision
    )
      return;
    this.triggers.set(key, obj);
    this.onChange({ op: "put", trigger: obj });
  }

  private remove(obj: TimeTrigger): void {
    const key = keyOf(obj.metadata.namespace, obj.metadata.name);
    const cur = this.triggers.get(key);
    // A delete of an older incarnation must not remove the one created since.
    if (!cur || cur.metadata.uid !== obj.metadata.uid) return;
    this.triggers.delete(key);
    this.onChange({ op: "removed", namespace: obj.metadata.namespace, name: obj.metadata.name });
  }
}
