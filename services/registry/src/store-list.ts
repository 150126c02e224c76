import type { Redis } from "ioredis";
import {
  FizzError,
  KIND_PLURALS,
  LIST_MAX_LIMIT,
  redisKeys,
  type KindPlural,
  type SkippedObject,
} from "@fizz/events";
import type { Logger } from "@fizz/kit";
import { chunkAfter, firstChunk } from "./store-page-read";
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
 * MGET of every key in order, one chunk after the other: a first small one (firstChunk), then each
 * sized to what `maxBytes` still holds at the largest text read so far (at most KEYS_CHUNK); throws LIST_TOO_LARGE as soon as the
 * texts pass `maxBytes`, before reading the rest. An unpaginated listing of large objects used to
 * read them all into Redis's output buffer and this process at once (1,000 of 1.4 MB: 1.4 GB).
 */
async function mgetBounded(
  client: Redis,
  keys: readonly string[],
  maxBytes: number,
  kind: KindPlural,
): Promise<(string | null)[]> {
  const out: (string | null)[] = [];
  let bytes = 0;
  let largest = 0;
  let n = Math.min(keys.length, firstChunk(maxBytes));
  while (n > 0) {
    for (const raw of await client.mget(...keys.slice(out.length, out.length + n))) {
      out.push(raw);
      if (raw === null) continue;
      const size = Buffer.byteLength(raw, "utf8");
      bytes += size;
      if (bytes > maxBytes) throw listTooLarge(kind, maxBytes);
      if (size > largest) largest = size;
    }
    // While keys are left, at least one more is read, even with the bound spent exactly: stopping
    // there (chunkAfter is 0 without budget left) answered the texts read so far as the whole
    // listing. That key either is gone (null) or takes the texts past the bound (LIST_TOO_LARGE).
    const left = keys.length - out.length;
    n =
      left === 0
        ? 0
        : Math.max(1, Math.min(KEYS_CHUNK, chunkAfter(left, maxBytes - bytes, largest)));
  }
  return out;
}

/** An unpaginated listing over its byte bound: the caller must page (list-params.ts). */
function listTooLarge(kind: KindPlural, maxBytes: number): FizzError {
  return new FizzError(
    "LIST_TOO_LARGE",
    `limit: the listing of ${kind} is over ${maxBytes} bytes, the most one answer without paging ` +
      `holds; ask for pages instead: limit (1 to ${LIST_MAX_LIMIT}) and the continue token of each answer`,
    { field: "limit" },
  );
}

/**
 * Every object of a kind (or of one namespace), sorted by (namespace, name) of its key, as `read`
 * answers it (parsed, or its JSON). Watched inside a transaction: the index and each listed object
 * (an update changes an object without touching the index). `read` throws for an unreadable object.
 * With `maxBytes` (an unpaginated REST or `registry.list` answer, never in a transaction), the
 * stored texts and the answers that are JSON text are bounded by it: LIST_TOO_LARGE past it.
 */
export async function readList<K extends KindPlural, T>(
  client: Redis,
  prefix: string,
  watch: boolean,
  kind: K,
  ns: string | undefined,
  logger: Logger,
  read: (kind: K, key: string, raw: string) => T,
  maxBytes?: number,
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
  const values =
    maxBytes === undefined || watch
      ? await mgetAll(client, objKeys, watch)
      : await mgetBounded(client, objKeys, maxBytes, kind);
  // The answers' bytes: a text that is not canonical is answered re-encoded, and bytes that are
  // not UTF-8 decode to U+FFFD (3 bytes each), so an answer may be larger than what was stored.
  let answered = 0;
  const fits = (item: T): T => {
    if (maxBytes === undefined || typeof item !== "string") return item;
    answered += Buffer.byteLength(item, "utf8");
    if (answered > maxBytes) throw listTooLarge(kind, maxBytes);
    return item;
  };
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
    let item: T;
    try {
      item = read(kind, objKeys[i] ?? "", raw);
    } catch (err) {
      skipped.push(names[i]!);
      logger.error(
        { component: "store", err: (err as Error).message },
        "stored object left out of a listing: it does not match its schema",
      );
      return;
    }
    items.push(fits(item));
  });
  return { items, skipped };
}
