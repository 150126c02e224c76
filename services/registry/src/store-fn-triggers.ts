import type { Redis } from "ioredis";
import type { AnyObject, KindPlural } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import { functionOf, indexedTriggerTexts } from "./function-index";
import type { KnownJson } from "./store-parse";
import type { FunctionTriggers } from "./store-types";

/** Keys per MGET at most when the triggers' texts are read. */
const TEXT_CHUNK = 500;

/**
 * Store.functionTriggers: per trigger kind, the first `perFunction` triggers (by name) of each of
 * `functions` and how many there are, read through the function index (function-index.ts);
 * undefined while the index is not built. A member is a candidate: the trigger itself says whose
 * it is, and one read that is gone, another function's, or unreadable (logged, as in a listing)
 * is left out and not counted. A stale member past the first `perFunction` still counts (only a
 * registry older than the index leaves one, during a rolling upgrade; the build run after it, its
 * marker deleted, drops it: function-index-stale.ts). Texts are read within `maxBytes`; those
 * past it are not shown, and still counted.
 */
export async function readFunctionTriggers(
  client: Redis,
  prefix: string,
  known: KnownJson,
  logger: Logger,
  functions: readonly { namespace: string; name: string }[],
  perFunction: number,
  maxBytes: number,
): Promise<Map<KindPlural, FunctionTriggers> | undefined> {
  const texts = await indexedTriggerTexts(
    client,
    prefix,
    functions,
    perFunction,
    TEXT_CHUNK,
    maxBytes,
  );
  if (!texts) return undefined;
  const out = new Map<KindPlural, FunctionTriggers>();
  for (const [kind, { counts, texts: list }] of texts) {
    const items: FunctionTriggers["items"] = [];
    for (const { fn, key, raw } of list) {
      if (raw === undefined) continue; // past the byte budget: not shown, still counted
      const owner = functions[fn];
      const bytes = raw === null ? undefined : readable(known, logger, kind, key, raw);
      const t = bytes && (JSON.parse(bytes.toString("utf8")) as AnyObject);
      if (
        bytes &&
        t &&
        owner &&
        t.metadata.namespace === owner.namespace &&
        functionOf(t) === owner.name
      )
        items.push({ fn, bytes });
      else counts[fn] = Math.max(0, (counts[fn] ?? 1) - 1);
    }
    out.set(kind, { counts, items });
  }
  return out;
}

function readable(
  known: KnownJson,
  logger: Logger,
  kind: KindPlural,
  key: string,
  raw: Buffer,
): Buffer | undefined {
  try {
    return known.jsonBytes(kind, key, raw);
  } catch (err) {
    logger.error(
      { component: "store", err: (err as Error).message },
      "stored object left out of a listing: it does not match its schema",
    );
    return undefined;
  }
}
