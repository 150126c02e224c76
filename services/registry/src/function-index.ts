import type { Redis } from "ioredis";
import { FizzError, redisKeys, TRIGGER_KINDS, type KindPlural } from "@fizz/events";
import { inTurns } from "./in-turns";
import { listIndexKey } from "./store-list";
import { readWithin } from "./store-page-read";
import type { Writes } from "./store-types";

/**
 * The function index: which triggers invoke one function, per kind, so the console's listing reads
 * a page's own triggers instead of every trigger of the page's namespaces (at 10,000 functions and
 * triggers in one namespace: ~100 ms and 3.6 MB from Redis per page of 500, and a full walk read
 * them all again per page).
 *
 * Keys (under the store's prefix):
 *   fnidx:<kind>:<ns>:<function>   set of names of the <kind> triggers in <ns> whose spec.function
 *                                  is <function> (a trigger's function is always in its own
 *                                  namespace: references.ts)
 *   fnidx:built:v1                 set once every trigger stored before the index existed was added
 *
 * Kept exact like the route index: each trigger put or remove edits the sets in its own MULTI
 * (store-tx.ts), its old function's set losing it (the old object read and watched there), the
 * new one's gaining it — a PATCH that moves a trigger to another function moves its member.
 *
 * Stores written before the index: `buildFunctionIndex` (start-up) adds their triggers a page at a
 * time, each page one store transaction that watches the page's objects while it reads them, so a
 * write to one of them meanwhile makes the page run again (never a member for a function the
 * trigger left); writes keep the sets current whether or not the build has run. Several replicas
 * building at once add the same members (sets: idempotent). The marker is set after the last page;
 * until then readers fall back to scanning the namespaces (console-functions.ts). A member is
 * still only a candidate: readers check the trigger's spec.function, so a stale member (left by a
 * registry that predates the index, during a rolling upgrade) is never shown; but a row counts its
 * set and shows its smallest names, so one is counted and may take a shown trigger's place until a
 * build (its marker deleted after the upgrade) drops it (function-index-stale.ts).
 */
export const FN_INDEX_KINDS: readonly KindPlural[] = TRIGGER_KINDS;

/** Triggers per build transaction: each is watched, so a busy store retries smaller pages less. */
const BUILD_PAGE = 500;

export function isIndexedKind(kind: KindPlural): boolean {
  return FN_INDEX_KINDS.includes(kind);
}

export function fnIndexKey(prefix: string, kind: KindPlural, ns: string, fn: string): string {
  return redisKeys(prefix).fnIndex(kind, ns, fn);
}

export function fnIndexBuiltKey(prefix: string): string {
  return redisKeys(prefix).fnIndexBuilt;
}

/** A stored trigger's spec.function, read leniently: a text no schema accepts still names one. */
export function functionOfRaw(raw: string | null): string | undefined {
  if (raw === null) return undefined;
  try {
    return functionOf(JSON.parse(raw) as unknown);
  } catch {
    return undefined;
  }
}

export function functionOf(obj: unknown): string | undefined {
  const spec = (obj as { spec?: { function?: unknown } } | null | undefined)?.spec;
  return typeof spec?.function === "string" ? spec.function : undefined;
}

/** The set edits of one trigger write: its old function's set left (if it changed), the new one's joined. */
export function fnIndexEdits(
  prefix: string,
  kind: KindPlural,
  ns: string,
  name: string,
  before: string | undefined,
  after: string | undefined,
): { key: string; add?: string; remove?: string }[] {
  const out: { key: string; add?: string; remove?: string }[] = [];
  if (before !== undefined && before !== after)
    out.push({ key: fnIndexKey(prefix, kind, ns, before), remove: name });
  if (after !== undefined) out.push({ key: fnIndexKey(prefix, kind, ns, after), add: name });
  return out;
}

/**
 * Adds every stored trigger to the function index, then sets the marker; nothing when it is set.
 * `transact` runs a body as one store transaction (reads watched on `conn`). Memory: one page of
 * names and texts at a time. Answers the triggers added.
 */
export async function buildFunctionIndex(
  client: Redis,
  prefix: string,
  transact: <T>(body: (conn: Redis) => Promise<{ writes: Writes; result: T }>) => Promise<T>,
): Promise<number> {
  if ((await client.get(fnIndexBuiltKey(prefix))) !== null) return 0;
  const keys = redisKeys(prefix);
  // One page in one transaction, its objects watched; a page that keeps losing the race to
  // writers (UNAVAILABLE after the store's retries) is split in halves rather than failing the
  // start-up tasks, which would keep the registry from being ready on a busy store.
  const addPage = async (
    kind: KindPlural,
    ids: { ns: string; name: string }[],
  ): Promise<number> => {
    try {
      return await transact(async (conn) => {
        const objKeys = ids.map(({ ns, name }) => keys.obj(kind, ns, name));
        await conn.watch(...objKeys);
        const values = await conn.mget(...objKeys);
        const index: NonNullable<Writes["index"]> = [];
        values.forEach((raw, i) => {
          const fn = functionOfRaw(raw);
          const id = ids[i];
          if (fn !== undefined && id !== undefined)
            index.push({ key: fnIndexKey(prefix, kind, id.ns, fn), add: id.name });
        });
        return { writes: { index }, result: index.length };
      });
    } catch (err) {
      if (!(err instanceof FizzError && err.code === "UNAVAILABLE" && ids.length > 1)) throw err;
      const half = Math.ceil(ids.length / 2);
      return (await addPage(kind, ids.slice(0, half))) + (await addPage(kind, ids.slice(half)));
    }
  };
  let added = 0;
  for (const kind of FN_INDEX_KINDS) {
    // The list index (sorted `ns\0name`, built before this) pages every trigger of the kind.
    let from = "-";
    for (;;) {
      const members = await client.zrangebylex(
        listIndexKey(prefix, kind),
        from,
        "+",
        "LIMIT",
        0,
        BUILD_PAGE,
      );
      if (members.length === 0) break;
      from = `(${members[members.length - 1] ?? ""}`;
      const ids = members.map((m) => {
        const [ns = "", name = ""] = m.split("\0");
        return { ns, name };
      });
      added += await addPage(kind, ids);
      if (members.length < BUILD_PAGE) break;
    }
  }
  await transact(() =>
    Promise.resolve({ writes: { marker: fnIndexBuiltKey(prefix) }, result: undefined }),
  );
  return added;
}

/** What the index answers for a page of functions, per kind (indexedTriggerTexts). */
export interface IndexedTriggers {
  /** Per function (in the order asked), its set's size: its triggers, stale members included. */
  counts: number[];
  /**
   * The first members of each function's set by name (at most `perFunction`), with their texts:
   * null when gone, undefined when past the byte budget (not read).
   */
  texts: { fn: number; key: string; raw: Buffer | null | undefined }[];
}

/** Sets scanned at once for their first members (each holds one SSCAN batch while it runs). */
const SCANS_AT_ONCE = 16;
/** Members per SSCAN step. */
const SCAN_COUNT = 1000;

/**
 * Per kind, how many triggers name each of these functions (one namespace each) by the index, and
 * the stored texts of the first `perFunction` of them by name; undefined while the index is not
 * built. Memory is bounded by `perFunction`, not by how many triggers a function has: a set larger
 * than that is read by SSCAN, keeping only its smallest names (a function with 50,000 triggers
 * costs reads, never its 50,000 names or texts at once). Candidates only: the caller checks each
 * trigger's spec.function. Texts read in order (kind, then function) within `maxBytes`, in MGETs of
 * at most `chunk` keys sized by it (readWithin): a trigger's text can be megabytes (its labels), so
 * the count bound alone left a page's joined texts unbounded in bytes.
 */
export async function indexedTriggerTexts(
  client: Redis,
  prefix: string,
  functions: readonly { namespace: string; name: string }[],
  perFunction: number,
  chunk: number,
  maxBytes: number,
): Promise<Map<KindPlural, IndexedTriggers> | undefined> {
  if ((await client.get(fnIndexBuiltKey(prefix))) === null) return undefined;
  const keys = redisKeys(prefix);
  const sets = FN_INDEX_KINDS.flatMap((kind) =>
    functions.map((f, fn) => ({ kind, fn, key: fnIndexKey(prefix, kind, f.namespace, f.name) })),
  );
  const p = client.pipeline();
  for (const s of sets) p.scard(s.key);
  const cards = ((await p.exec()) ?? []).map(([err, n]) => {
    if (err) throw err;
    return Number(n);
  });
  const firsts = await firstMembers(
    client,
    sets.map((s) => s.key),
    cards,
    perFunction,
  );
  const out = new Map<KindPlural, IndexedTriggers>();
  sets.forEach((s, i) => {
    let entry = out.get(s.kind);
    if (!entry)
      out.set(s.kind, (entry = { counts: new Array<number>(functions.length).fill(0), texts: [] }));
    entry.counts[s.fn] = cards[i] ?? 0;
    const ns = functions[s.fn]?.namespace ?? "";
    for (const name of firsts[i] ?? [])
      entry.texts.push({ fn: s.fn, key: keys.obj(s.kind, ns, name), raw: undefined });
  });
  const all = [...out.values()].flatMap((e) => e.texts);
  const values = await readWithin(
    client,
    all.map((t) => t.key),
    maxBytes,
    chunk,
  );
  all.forEach((t, i) => (t.raw = values[i]));
  return out;
}

/**
 * Per set (of `cards[i]` members), its `n` smallest names. The sets of at most `n` members (most:
 * a function has a few triggers of a kind) are read together, SMEMBERS in one pipeline: a round
 * trip per set made a page of 500 functions with a few triggers each ~20% slower than the one
 * pipeline before rows were bounded. Only a larger set is walked, by SSCAN, a few at once.
 */
async function firstMembers(
  client: Redis,
  keys: readonly string[],
  cards: readonly number[],
  n: number,
): Promise<string[][]> {
  const out = keys.map((): string[] => []);
  if (n <= 0) return out;
  const small: number[] = [];
  const large: number[] = [];
  cards.forEach((card, i) => {
    if (card > n) large.push(i);
    else if (card > 0) small.push(i);
  });
  if (small.length > 0) {
    const p = client.pipeline();
    for (const i of small) p.smembers(keys[i] ?? "");
    ((await p.exec()) ?? []).forEach(([err, names], j) => {
      if (err) throw err;
      out[small[j] ?? 0] = smallest(names as string[], n);
    });
  }
  const walked = await inTurns(large, SCANS_AT_ONCE, (i) => scanSmallest(client, keys[i] ?? "", n));
  large.forEach((i, j) => (out[i] = walked[j] ?? []));
  return out;
}

/** The `n` smallest names of a set, by SSCAN: one batch and the names kept in memory at a time. */
async function scanSmallest(client: Redis, key: string, n: number): Promise<string[]> {
  let keep: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await client.sscan(key, cursor, "COUNT", SCAN_COUNT);
    cursor = next;
    keep = smallest(keep.concat(batch), n);
  } while (cursor !== "0");
  return keep;
}

/** The `n` smallest distinct names, sorted (SSCAN may answer a member twice). */
function smallest(names: string[], n: number): string[] {
  return [...new Set(names)].sort(cmp).slice(0, n);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
