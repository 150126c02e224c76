import type { Redis } from "ioredis";
import { FizzError, redisKeys, type KindPlural, type RedisKeys } from "@fizz/events";
import { fromListIndexMember, listIndexKey, listIndexRange } from "./store-list";
import { yieldShare } from "./store-relearn";
import { readPage, type ReadStored } from "./store-page-read";
import type { PageCursor, PageOf, PageRequest } from "./store-types";

/**
 * One page of a kind, in (namespace, name) order by code point, from after the cursor. The cursor
 * is a position, not a snapshot: an object that exists from the first page to the last is listed
 * exactly once, whatever is created or deleted meanwhile (those may or may not be), which is what
 * a client following pages (and a service merging them with change events) needs.
 *
 * The names come from the kind's sorted set (store-list.ts) with ZRANGEBYLEX from the cursor: a
 * page costs O(page), not O(all objects). Reading the whole set and sorting it on every page was
 * 10,000 strings allocated, split and sorted per page of 500 — at 10,000 functions the registry
 * spent most of a restart's listing in the garbage collector. The sorted set is used only when it
 * holds as many members as the kind's set (both change in one MULTI); otherwise (not built yet, or
 * written by a registry that predates it) the page is cut from the set as before.
 */
export async function listPage<K extends KindPlural, T>(
  client: Redis,
  prefix: string,
  kind: K,
  req: PageRequest,
  parse: ReadStored<K, T>,
  sizes?: Map<KindPlural, number>,
): Promise<PageOf<T>> {
  const keys = redisKeys(prefix);
  const { min, max } = listIndexRange(req.namespace, req.after);
  // One round trip, one snapshot (MULTI): both sizes and the page's names (one more than the
  // page, to know whether more follow). The texts are read with MGET, from the client: a Lua
  // script reading and concatenating them in Redis (one bulk reply, fewer objects on this heap)
  // cost Redis's one thread, which every service shares, 4–7× an MGET of the same keys (each text
  // copied into the Lua heap, concatenated, copied out) and left ~3× the page's bytes in a Lua heap
  // maxmemory does not count (test/list-page-redis-cost.int.test.ts). The texts are read in
  // chunks up to the page's byte budget (store-page-read.ts), not all `limit` of them at once.
  const results = await client
    .multi()
    .zcard(listIndexKey(prefix, kind))
    .scard(keys.kindIndex(kind))
    .zrangebylex(listIndexKey(prefix, kind), min, max, "LIMIT", 0, req.limit + 1)
    .exec();
  const failed = results?.find(([err]) => err);
  if (!results || failed) throw FizzError.from(failed?.[0] ?? new Error("list page not read"));
  const [[, zcard], [, scard], [, names]] = results as [
    [null, number],
    [null, number],
    [null, string[]],
  ];
  if (zcard !== scard)
    return { ...(await listPageFromSet(client, keys, kind, req, parse, sizes)), total: scard };
  // The members become object keys directly (`<ns>NUL<name>` -> `...obj:<kind>:<ns>:<name>`), and
  // a cursor only for the page's last object and the skipped: a cursor per member was ~80 bytes
  // of short-lived heap per object.
  const members = names.length > req.limit ? names.slice(0, req.limit) : names;
  const base = keys.obj(kind, "", "").slice(0, -1); // `<prefix>obj:<kind>:`
  const objKeys = members.map((m) => base + m.replace("\0", ":"));
  const page = await readPage(
    client,
    objKeys,
    (i) => fromListIndexMember(members[i]!),
    kind,
    names.length > req.limit,
    req.maxBytes,
    parse,
    sizes,
  );
  return { ...page, total: zcard };
}

/** The page cut from the kind's (or namespace's) unordered set: every name read and sorted. */
async function listPageFromSet<K extends KindPlural, T>(
  client: Redis,
  keys: RedisKeys,
  kind: K,
  req: PageRequest,
  parse: ReadStored<K, T>,
  sizes?: Map<KindPlural, number>,
): Promise<PageOf<T>> {
  const ns = req.namespace;
  const members = await client.smembers(
    ns === undefined ? keys.kindIndex(kind) : keys.nsIndex(kind, ns),
  );
  // Sort keys in which plain string order is (namespace, name) order: names are DNS labels, so
  // NUL sorts below every character they may hold.
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
  const more = start + slice.length < sortKeys.length;
  const objKeys = slice.map((n) => keys.obj(kind, n.namespace, n.name));
  return readPage(client, objKeys, (i) => slice[i]!, kind, more, req.maxBytes, parse, sizes);
}

/** Pre-learning's pace: objects per step, the share of one CPU it may take, its retries. */
export interface LearnPace {
  /** One MGET and one synchronous run of checks: what a request or write arriving waits at most. */
  step: number;
  /** After a step of t ms of checks it sleeps t × (1 − share) / share (at least 1 ms). */
  share: number;
  /**
   * A step whose reads fail is tried again after baseMs, doubling up to maxMs, `attempts` times
   * in all in a row; then pre-learning gives up (the listings check what it did not learn).
   */
  retry?: { baseMs: number; maxMs: number; attempts: number };
}

// 100 ms doubling to 5 s, 10 attempts in a row: ~30 s of Redis away (a restart, a failover).
const LEARN_PACE: LearnPace = {
  step: 50,
  share: 0.5,
  retry: { baseMs: 100, maxMs: 5000, attempts: 10 },
};

/**
 * Pre-learning after start: every stored object of the given kinds read in small steps (the list
 * index, in order) and handed to `learn` (KnownJson.learn), so the first listing after a start
 * answers known texts as stored instead of parsing, checking and encoding each of them on the
 * listing's time (at 10,000 functions the first pages cost ~4× the later ones and were the
 * slowest). Off every request's path: started after the start-up tasks, never awaited by
 * readiness, it sleeps between steps in proportion to its work and gives up on `signal`. It only
 * ever reads: what it learns is the digest of the exact text it checked, so a write meanwhile
 * (which forgets its key) leaves either nothing or a digest the new text does not match, and the
 * next listing checks that text as before. An object missing from the list index (an index not
 * built yet) is simply not learnt. Answers how many texts it found readable and canonical.
 *
 * A step whose reads fail (Redis restarting, a failover, a dropped connection) is tried again from
 * the same position after a back-off (`onRetry` hears of each); it used to end pre-learning for
 * good on the first error, leaving every object to the listings until the next restart. Only
 * `pace.retry.attempts` failures in a row make it give up (it then rejects with the last error).
 */
export async function learnStored(
  client: Redis,
  prefix: string,
  kinds: readonly KindPlural[],
  learn: (kind: KindPlural, key: string, raw: Buffer) => boolean,
  signal: AbortSignal,
  pace: LearnPace = LEARN_PACE,
  onRetry?: (err: unknown, attempt: number) => void,
): Promise<number> {
  const keys = redisKeys(prefix);
  let learnt = 0;
  // One step's reads: the names after the cursor and their stored texts.
  const read = async (kind: KindPlural, after: PageCursor | undefined) => {
    const { min, max } = listIndexRange(undefined, after);
    const index = listIndexKey(prefix, kind);
    const names = await client.zrangebylex(index, min, max, "LIMIT", 0, pace.step);
    const objKeys = names.map((m) => {
      const n = fromListIndexMember(m);
      return keys.obj(kind, n.namespace, n.name);
    });
    const values = names.length === 0 ? [] : await client.mgetBuffer(...objKeys);
    return { names, objKeys, values };
  };
  for (const kind of kinds) {
    let after: PageCursor | undefined;
    while (!signal.aborted) {
      const retry = pace.retry ?? LEARN_PACE.retry!;
      const step = await withRetry(() => read(kind, after), retry, signal, onRetry);
      if (!step) break; // aborted during a back-off
      const { names, objKeys, values } = step;
      if (names.length === 0 || signal.aborted) break;
      const t0 = performance.now();
      values.forEach((raw, i) => {
        if (raw !== null && learn(kind, objKeys[i]!, raw)) learnt++;
      });
      const spent = performance.now() - t0;
      after = fromListIndexMember(names[names.length - 1]!);
      await yieldShare(spent, pace.share);
    }
  }
  return learnt;
}

/**
 * `fn`, tried again after baseMs × 2^n (at most maxMs) while it fails, `attempts` times in all;
 * undefined when the signal aborts meanwhile. The last failure is thrown.
 */
async function withRetry<T>(
  fn: () => Promise<T>,
  retry: NonNullable<LearnPace["retry"]>,
  signal: AbortSignal,
  onRetry?: (err: unknown, attempt: number) => void,
): Promise<T | undefined> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (signal.aborted) return undefined;
      if (attempt >= retry.attempts) throw err;
      onRetry?.(err, attempt);
      const ms = Math.min(retry.maxMs, retry.baseMs * 2 ** (attempt - 1));
      if (!(await sleepUnlessAborted(ms, signal))) return undefined;
    }
  }
}

/** Sleeps `ms` (timer unref'd); false when the signal aborted first. */
function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (slept: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve(slept);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    timer.unref();
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
