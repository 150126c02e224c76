import type { Redis } from "ioredis";
import type { KindPlural, ObjectsByPlural, RedisKeys, SkippedObject } from "@fizz/events";

/** Where a page starts: after this object (exclusive), in the listing's order. */
export interface PageCursor {
  namespace: string;
  name: string;
}

export interface PageRequest {
  /** Without one, every namespace. */
  namespace?: string | undefined;
  limit: number;
  after?: PageCursor | undefined;
  /** Ends the page early once its stored JSON passes this many bytes (a NATS reply must fit). */
  maxBytes?: number | undefined;
}

export interface ListPage<K extends KindPlural> {
  items: ObjectsByPlural[K][];
  skipped: SkippedObject[];
  /** The last object of this page when more follow; undefined on the last page. */
  next?: PageCursor;
}

/**
 * One page of a kind: the index's members sorted (namespace, then name, by code point), those
 * after the cursor, and only the page's objects read. The cursor is a position, not a snapshot:
 * an object that exists from the first page to the last is listed exactly once, whatever is
 * created or deleted meanwhile (those may or may not be), which is what a client following pages
 * (and a service merging them with change events) needs. Sorting the member names costs a few ms
 * at 10,000; reading and parsing only `limit` objects is what keeps a page fast.
 */
export async function listPage<K extends KindPlural>(
  client: Redis,
  keys: RedisKeys,
  kind: K,
  req: PageRequest,
  parse: (kind: K, key: string, raw: string) => ObjectsByPlural[K] | undefined,
): Promise<ListPage<K>> {
  const ns = req.namespace;
  const members = await client.smembers(
    ns === undefined ? keys.kindIndex(kind) : keys.nsIndex(kind, ns),
  );
  // Sort keys in which plain string order is (namespace, name) order: names are DNS labels, so
  // NUL sorts below every character they may hold. Sorting strings without a comparator is what
  // keeps a page over 10,000 names at a few ms.
  const sortKeys = ns === undefined ? members.map((m) => m.replace("/", "\0")) : members.slice();
  sortKeys.sort();
  const after = req.after;
  let start = 0;
  if (after) {
    const cursor = ns === undefined ? `${after.namespace}\0${after.name}` : after.name;
    // Binary search: the first name strictly after the cursor.
    let lo = 0;
    let hi = sortKeys.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sortKeys[mid]! <= cursor) lo = mid + 1;
      else hi = mid;
    }
    start = lo;
  }
  const slice: PageCursor[] = sortKeys.slice(start, start + req.limit).map((k) => {
    if (ns !== undefined) return { namespace: ns, name: k };
    const [mns = "", mname = ""] = k.split("\0");
    return { namespace: mns, name: mname };
  });
  const out: ListPage<K> = { items: [], skipped: [] };
  if (slice.length === 0) return out;
  const objKeys = slice.map((n) => keys.obj(kind, n.namespace, n.name));
  const values = await client.mget(...objKeys);
  let bytes = 0;
  let taken = 0;
  for (const [i, raw] of values.entries()) {
    // Past the byte budget (always at least one object, so a listing always advances).
    if (req.maxBytes !== undefined && taken > 0 && bytes + (raw?.length ?? 0) > req.maxBytes) break;
    taken = i + 1;
    // Deleted between the index read and this one: not listed.
    if (raw === null) continue;
    bytes += raw.length;
    const obj = parse(kind, objKeys[i] ?? "", raw);
    if (obj) out.items.push(obj);
    else out.skipped.push(slice[i]!);
  }
  const last = slice[taken - 1];
  if (start + taken < sortKeys.length && last) out.next = last;
  return out;
}
