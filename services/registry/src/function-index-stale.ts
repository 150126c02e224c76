import type { Redis } from "ioredis";
import { FizzError, redisKeys, type KindPlural } from "@fizz/events";
import { FN_INDEX_KINDS, functionOfRaw } from "./function-index";
import type { Writes } from "./store-types";

/** Runs a body as one store transaction, its reads watched on `conn` (TxLanes.enqueue). */
type Transact = <T>(body: (conn: Redis) => Promise<{ writes: Writes; result: T }>) => Promise<T>;

/** Keys, and members, per SCAN/SSCAN step; members per transaction. */
const STEP = 500;

/** A member of one function's set: the set, its kind, the namespace, the function, the trigger. */
interface Member {
  key: string;
  kind: KindPlural;
  ns: string;
  fn: string;
  name: string;
}

/**
 * Drops the members of the function index's sets that no longer name their trigger's function:
 * the trigger is gone, or names another function. Only an older registry replica (before the
 * index) leaves one, when it moves or deletes a trigger during a rolling upgrade; the build runs
 * again once the marker is deleted (docs/architecture.md), and adding alone left them for good. A
 * row counts its set's size and shows its smallest names, so each was counted and could take a
 * shown trigger's place. STEP members (of any sets) per store transaction, which watches their
 * triggers, so a write meanwhile (the trigger moved back, or created again) makes it read again
 * (a transaction per set made a build of 5,000 one-trigger functions ~0.5 s longer). Answers the
 * members dropped.
 */
export async function dropStaleMembers(
  client: Redis,
  prefix: string,
  transact: Transact,
): Promise<number> {
  // `<prefix>fnidx:`, what precedes `<kind>:<ns>:<fn>` in every set's key.
  const head = redisKeys(prefix)
    .fnIndex("httptriggers", "n", "f")
    .slice(0, -"httptriggers:n:f".length);
  const pattern = `${globEscape(head)}*`;
  let dropped = 0;
  let pending: Member[] = [];
  const flush = async () => {
    for (let i = 0; i < pending.length; i += STEP)
      dropped += await dropBatch(prefix, pending.slice(i, i + STEP), transact);
    pending = [];
  };
  let cursor = "0";
  do {
    const [next, found] = await client.scan(cursor, "MATCH", pattern, "COUNT", STEP);
    cursor = next;
    const sets = [...new Set(found)].flatMap((key) => {
      // <kind>:<ns>:<fn>: a kind's plural and two DNS labels, none holds a colon (the built
      // marker, fnidx:built:v1, names no kind).
      const [kind, ns, fn, ...rest] = key.slice(head.length).split(":");
      const indexed = FN_INDEX_KINDS.find((k) => k === kind);
      return !indexed || ns === undefined || fn === undefined || rest.length > 0
        ? []
        : [{ key, kind: indexed, ns, fn }];
    });
    // Most sets are small: read together (a round trip per set doubled the build); a large one
    // is walked a step at a time.
    const cards = await pipelined(client, sets, (p, s) => p.scard(s.key));
    const small = sets.filter((_, i) => Number(cards[i]) <= STEP);
    const names = await pipelined(client, small, (p, s) => p.smembers(s.key));
    for (const [i, s] of small.entries())
      for (const name of names[i] as string[]) pending.push({ ...s, name });
    if (pending.length >= STEP) await flush();
    for (const s of sets.filter((_, i) => Number(cards[i]) > STEP)) {
      let members = "0";
      do {
        const [more, batch] = await client.sscan(s.key, members, "COUNT", STEP);
        members = more;
        for (const name of new Set(batch)) pending.push({ ...s, name });
        if (pending.length >= STEP) await flush();
      } while (members !== "0");
    }
  } while (cursor !== "0");
  await flush();
  return dropped;
}

/** One transaction over `members`' triggers, watched; a batch that keeps losing to writers is split. */
async function dropBatch(prefix: string, members: Member[], transact: Transact): Promise<number> {
  const keys = redisKeys(prefix);
  try {
    return await transact(async (conn) => {
      const objKeys = members.map((m) => keys.obj(m.kind, m.ns, m.name));
      await conn.watch(...objKeys);
      const values = await conn.mget(...objKeys);
      const index: NonNullable<Writes["index"]> = [];
      values.forEach((raw, i) => {
        const m = members[i];
        if (m !== undefined && functionOfRaw(raw) !== m.fn)
          index.push({ key: m.key, remove: m.name });
      });
      return { writes: { index }, result: index.length };
    });
  } catch (err) {
    if (!(err instanceof FizzError && err.code === "UNAVAILABLE" && members.length > 1)) throw err;
    const half = Math.ceil(members.length / 2);
    return (
      (await dropBatch(prefix, members.slice(0, half), transact)) +
      (await dropBatch(prefix, members.slice(half), transact))
    );
  }
}

/** One command per item in one pipeline; its answers in order, the first error thrown. */
async function pipelined<T>(
  client: Redis,
  items: readonly T[],
  add: (p: ReturnType<Redis["pipeline"]>, item: T) => unknown,
): Promise<unknown[]> {
  if (items.length === 0) return [];
  const p = client.pipeline();
  for (const item of items) add(p, item);
  return ((await p.exec()) ?? []).map(([err, v]) => {
    if (err) throw err;
    return v;
  });
}

function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
