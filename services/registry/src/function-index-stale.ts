import type { Redis } from "ioredis";
import { FizzError, redisKeys, type KindPlural } from "@fizz/events";
import { fnIndexKey, functionOfRaw } from "./function-index";
import type { Writes } from "./store-types";

/** Runs a body as one store transaction, its reads watched on `conn` (TxLanes.enqueue). */
type Transact = <T>(body: (conn: Redis) => Promise<{ writes: Writes; result: T }>) => Promise<T>;

/** Keys, and members, per SCAN/SSCAN step; members per transaction. */
const STEP = 500;

/**
 * Drops the members of `kind`'s function index sets that no longer name their trigger's function:
 * the trigger is gone, or names another function. Only an older registry replica (before the
 * index) leaves one, when it moves or deletes a trigger during a rolling upgrade; the build runs
 * again once the marker is deleted (docs/architecture.md), and adding alone left them for good. A
 * row counts its set's size and shows its smallest names, so each was counted and could take a
 * shown trigger's place. Each batch is one store transaction that watches its triggers, so a write
 * meanwhile (the trigger moved back, or created again) makes it read again. Answers the members
 * dropped.
 */
export async function dropStaleMembers(
  client: Redis,
  prefix: string,
  kind: KindPlural,
  transact: Transact,
): Promise<number> {
  const head = fnIndexKey(prefix, kind, "", "").slice(0, -1); // `<prefix>fnidx:<kind>:`
  const pattern = `${globEscape(head)}*`;
  let dropped = 0;
  let cursor = "0";
  do {
    const [next, setKeys] = await client.scan(cursor, "MATCH", pattern, "COUNT", STEP);
    cursor = next;
    for (const key of new Set(setKeys)) {
      // <ns>:<fn>: both DNS labels, neither holds a colon.
      const [ns, fn, ...rest] = key.slice(head.length).split(":");
      if (ns === undefined || fn === undefined || rest.length > 0) continue;
      dropped += await dropFromSet(client, prefix, kind, { key, ns, fn }, transact);
    }
  } while (cursor !== "0");
  return dropped;
}

async function dropFromSet(
  client: Redis,
  prefix: string,
  kind: KindPlural,
  set: { key: string; ns: string; fn: string },
  transact: Transact,
): Promise<number> {
  const objKey = (name: string) => redisKeys(prefix).obj(kind, set.ns, name);
  // A batch that keeps losing to writers is split in halves, as the build's pages are.
  const drop = async (names: string[]): Promise<number> => {
    try {
      return await transact(async (conn) => {
        const objKeys = names.map(objKey);
        await conn.watch(...objKeys);
        const values = await conn.mget(...objKeys);
        const index: NonNullable<Writes["index"]> = [];
        values.forEach((raw, i) => {
          const name = names[i];
          if (name !== undefined && functionOfRaw(raw) !== set.fn)
            index.push({ key: set.key, remove: name });
        });
        return { writes: { index }, result: index.length };
      });
    } catch (err) {
      if (!(err instanceof FizzError && err.code === "UNAVAILABLE" && names.length > 1)) throw err;
      const half = Math.ceil(names.length / 2);
      return (await drop(names.slice(0, half))) + (await drop(names.slice(half)));
    }
  };
  let dropped = 0;
  let cursor = "0";
  do {
    const [next, batch] = await client.sscan(set.key, cursor, "COUNT", STEP);
    cursor = next;
    const names = [...new Set(batch)];
    if (names.length > 0) dropped += await drop(names);
  } while (cursor !== "0");
  return dropped;
}

function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
