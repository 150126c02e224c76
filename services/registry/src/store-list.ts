import type { Redis } from "ioredis";
import { KIND_PLURALS, redisKeys, type KindPlural, type SkippedObject } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import type { ListingOf, PageCursor, Writes } from "./store-types";

/**
 * The list index: per kind, a sorted set of every object's `<namespace>NUL<name>` (all scores 0,
 * so Redis orders members by bytes). Names are DNS labels, so NUL sorts below every character
 * they may hold and byte order is (namespace, name) order, the listing's order; a page is one
 * ZRANGEBYLEX from the cursor (store-page.ts). Kept in the same MULTI/EXEC as every object write
 * (store-tx.ts), next to the unordered sets it mirrors.
 *
 * Keys (under the store's prefix):
 *   lidx:<kind>       the sorted set
 *   lidx:built:v1     set once the sorted sets held every object stored before they existed
 *
 * A registry that predates the index writes objects without it. Pages use the sorted set only
 * while it has as many members as the kind's set, so such writes send listings back to the old
 * way (every name read and sorted) instead of leaving objects out; after a roll-out from such a
 * version, delete `lidx:built:v1` and the next registry to start rebuilds the index.
 */
export function listIndexKey(prefix: string, kind: KindPlural): string {
  return redisKeys(prefix).listIndex(kind);
}

export function listIndexBuiltKey(prefix: string): string {
  return redisKeys(prefix).listIndexBuilt;
}

export function listIndexMember(namespace: string, name: string): string {
  return `${namespace}\0${name}`;
}

export function fromListIndexMember(member: string): PageCursor {
  const at = member.indexOf("\0");
  return { namespace: member.slice(0, at), name: member.slice(at + 1) };
}

/** ZRANGEBYLEX bounds: after the cursor (exclusive), within the namespace when given. */
export function listIndexRange(
  namespace: string | undefined,
  after: PageCursor | undefined,
): { min: string; max: string } {
  // In a namespace, every member starts with `<ns>NUL`, and all of them sort below `<ns>\x01`.
  const max = namespace === undefined ? "+" : `(${namespace}\x01`;
  // In a namespace listing the cursor's name is all that counts (as in the set path): a cursor
  // naming another namespace (a token is only base64 JSON) must not move the range's start out
  // of the namespace, where it would list other namespaces' objects as this one's.
  if (after) return { min: `(${listIndexMember(namespace ?? after.namespace, after.name)}`, max };
  return { min: namespace === undefined ? "-" : `(${namespace}\0`, max };
}

/**
 * The writes that fill every kind's sorted set from its set, and mark it built; the caller runs
 * them in a transaction, so the sets read here are watched and a write meanwhile retries it.
 */
export async function listIndexBuild(conn: Redis, prefix: string): Promise<Writes> {
  const keys = redisKeys(prefix);
  const sets = KIND_PLURALS.map((k) => keys.kindIndex(k));
  await conn.watch(...sets);
  const members = await Promise.all(sets.map((key) => conn.smembers(key)));
  return {
    listIndex: KIND_PLURALS.map((kind, i) => ({
      key: listIndexKey(prefix, kind),
      members: (members[i] ?? []).map((m) => {
        const at = m.indexOf("/");
        return listIndexMember(m.slice(0, at), m.slice(at + 1));
      }),
    })),
    marker: listIndexBuiltKey(prefix),
  };
}

/** Keys per MGET / WATCH: past ~120,000 one argument per key overflows the call stack. */
const KEYS_CHUNK = 1000;

/**
 * MGET of every key (and, in a transaction, WATCH of every key), in chunks sent together: one
 * command spreading every key as an argument throws (call stack size) past ~120,000 keys, which
 * would fail every listing of such a kind, and the start-up tasks with it.
 */
export async function mgetAll(
  client: Redis,
  keys: readonly string[],
  watch: boolean,
): Promise<(string | null)[]> {
  const parts: Promise<[unknown, (string | null)[]]>[] = [];
  for (let i = 0; i < keys.length; i += KEYS_CHUNK) {
    const part = keys.slice(i, i + KEYS_CHUNK);
    // WATCH before the MULTI: every one is sent (in order, one connection) before this returns.
    parts.push(Promise.all([watch ? client.watch(...part) : undefined, client.mget(...part)]));
  }
  const out: (string | null)[] = [];
  for (const [, values] of await Promise.all(parts)) for (const v of values) out.push(v);
  return out;
}

/**
 * Every object of a kind (or of one namespace), sorted by (namespace, name) of its key, as `read`
 * answers it (parsed, or its JSON). Watched inside a transaction: the index and each listed object
 * (an update changes an object without touching the index). `read` throws for an unreadable object.
 */
export async function readList<K extends KindPlural, T>(
  client: Redis,
  prefix: string,
  watch: boolean,
  kind: K,
  ns: string | undefined,
  logger: Logger,
  read: (kind: K, key: string, raw: string) => T,
): Promise<ListingOf<T>> {
  const keys = redisKeys(prefix);
  const index = ns === undefined ? keys.kindIndex(kind) : keys.nsIndex(kind, ns);
  const [, members] = await Promise.all([
    watch ? client.watch(index) : undefined,
    client.smembers(index),
  ]);
  // Sorted before reading, so `items` comes out in order: by the keys' (namespace, name), which
  // is the objects' own for every object the registry wrote. As plain strings: `<ns>NUL<name>`
  // orders like (namespace, name) (names are DNS labels, NUL sorts below all they may hold), and
  // the native string sort is many times faster than a comparator (150,000 members: ~1 s).
  const sorted = ns === undefined ? members.map((m) => m.replace("/", "\0")) : members;
  sorted.sort();
  const names = sorted.map((m): SkippedObject =>
    ns === undefined ? fromListIndexMember(m) : { namespace: ns, name: m },
  );
  const objKeys = names.map((n) => keys.obj(kind, n.namespace, n.name));
  if (objKeys.length === 0) return { items: [], skipped: [] };
  const values = await mgetAll(client, objKeys, watch);
  const items: T[] = [];
  const skipped: SkippedObject[] = [];
  values.forEach((raw, i) => {
    if (raw === null) return;
    // A write decides over everything it reads, so there an unreadable object refuses it.
    if (watch) {
      items.push(read(kind, objKeys[i] ?? "", raw));
      return;
    }
    // A listing leaves it out, says why, and names it in `skipped`: one object written behind
    // the registry's back must not stop every service from learning all the others, nor may
    // they take it for deleted.
    try {
      items.push(read(kind, objKeys[i] ?? "", raw));
    } catch (err) {
      skipped.push(names[i]!);
      logger.error(
        { component: "store", err: (err as Error).message },
        "stored object left out of a listing: it does not match its schema",
      );
    }
  });
  return { items, skipped };
}
