/**
 * How a service's copy of one registry kind merges a full listing (`registry.list`, through
 * `followRegistryListing`) with the change events and other writes that cross it. One per kind.
 *
 * A listing is a snapshot taken some time after it was requested, and events keep arriving while
 * it is on its way: an event can be newer than the listing (so the listing must not undo it) or
 * older (then the listing already holds its effect). Which one cannot be told from the objects: a
 * listing holding an old incarnation looks like one holding a new one. So `begin()` opens a window
 * when the listing is requested, every write made meanwhile `touch`es its key, and `merge` leaves
 * touched keys alone. Those writes came over the connection the listing uses, so whatever changes
 * after them arrives as an event too.
 *
 * Invariants:
 * - An event (or any write) applied during a listing always wins over that listing: the listing
 *   neither overwrites its key nor removes it, nor brings it back after a delete.
 * - A key missing from a listing is removed, unless a write touched it during the window: it was
 *   deleted while events were lost (a NATS disconnect).
 * - A write before `begin()` is older than the listing, which then holds its effect or a newer one.
 * - A key the listing names as skipped (the registry could not read the object) is never removed:
 *   the object exists, in a shape this side cannot read either; what is held of it stays.
 *
 * Call `begin()` before each attempt (`onAttempt`), `abort()` when it fails (`onFailure`), and
 * `merge` with the answer (`onList`); `merge` closes the window. Writes outside a window are not
 * recorded. Applying the result (and any revision or uid checks) is the caller's.
 */
export class ListingWindow {
  private touched: Set<string> | undefined;

  /** A listing is being requested: writes from now on win over it. Restarts an open window. */
  begin(): void {
    this.touched = new Set();
  }

  /** A write to `key` (an event, a fetched object, a delete), whether it changed anything or not. */
  touch(key: string): void {
    this.touched?.add(key);
  }

  /** The listing failed: events are again the only news. */
  abort(): void {
    this.touched = undefined;
  }

  /** True between `begin()` and `merge`/`abort`. */
  get open(): boolean {
    return this.touched !== undefined;
  }

  /**
   * Merges the listing's `items` with the keys held now (`current`), and closes the window:
   * `apply` are the listed items whose keys were not touched (in listing order), `remove` the
   * current keys neither listed nor touched. Called without `begin()`, nothing counts as touched.
   *
   * `skipped` are the objects the registry left out of the listing because it could not read them
   * (`registry.list`'s `skipped`, handed to `onList` by `followRegistryListing`): they still exist,
   * so their keys are never removed (`kept` lists the current ones). Their keys come from `keyOf`
   * on `{ metadata: { namespace, name } }`, so with `skipped` it may read nothing else.
   */
  merge<T>(
    items: Iterable<T>,
    keyOf: (item: T) => string,
    current: Iterable<string>,
  ): MergeResult<T>;
  merge<T extends Named>(
    items: Iterable<T>,
    keyOf: (item: Named) => string,
    current: Iterable<string>,
    skipped: Iterable<ObjectName> | undefined,
  ): MergeResult<T>;
  merge<T>(
    items: Iterable<T>,
    keyOf: (item: T) => string,
    current: Iterable<string>,
    skipped?: Iterable<ObjectName>,
  ): MergeResult<T> {
    const touched = this.touched ?? new Set<string>();
    this.touched = undefined;
    const listed = new Set<string>();
    const apply: T[] = [];
    for (const item of items) {
      const key = keyOf(item);
      listed.add(key);
      if (!touched.has(key)) apply.push(item);
    }
    // Only the second overload passes `skipped`, and its keyOf takes a bare `{ metadata }`.
    const byName = keyOf as unknown as (item: Named) => string;
    const unread = new Set<string>();
    for (const metadata of skipped ?? []) unread.add(byName({ metadata }));
    const remove: string[] = [];
    const kept: string[] = [];
    for (const key of current) {
      if (listed.has(key) || touched.has(key)) continue;
      if (unread.has(key)) kept.push(key);
      else remove.push(key);
    }
    return { apply, remove, kept };
  }
}

/** An object by namespace and name (what `registry.list` says of one it left out). */
export interface ObjectName {
  namespace: string;
  name: string;
}

/** What a `keyOf` that also keys the objects a listing left out may read. */
export interface Named {
  metadata: ObjectName;
}

export interface MergeResult<T> {
  /** Listed items whose keys were not touched during the window, in listing order. */
  apply: T[];
  /** Current keys neither listed nor touched nor skipped: deleted while events were lost. */
  remove: string[];
  /** Current keys not listed because the registry could not read them: left as they are. */
  kept: string[];
}
