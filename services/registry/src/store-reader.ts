import type { Redis } from "ioredis";
import { redisKeys, type AnyObject, type HttpTrigger, type KindPlural } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import { isIndexedKind } from "./function-index";
import { routeIndexBuiltKey, routeIndexKey } from "./route-index";
import { readBatch } from "./redis-batch";
import { readList } from "./store-list";
import { parseStored } from "./store-parse";
import { seenKey } from "./store-tx";
import type { StoreReader } from "./store-types";

export interface ReaderOptions {
  client: Redis;
  prefix: string;
  logger: Logger;
  /** WATCH every key read (inside a transaction's body), so a change meanwhile aborts its EXEC. */
  watch: boolean;
  /** Each indexed trigger read, as it was (store-tx.ts uses them to edit the function index). */
  seen?: Map<string, AnyObject | undefined> | undefined;
  assertReady: () => void;
}

/** The store's reads on one connection: the shared client, or a transaction's own (watched). */
export function storeReader(opts: ReaderOptions): StoreReader {
  const { client, prefix, logger, watch, seen, assertReady } = opts;
  const keys = redisKeys(prefix);
  const get = async <K extends KindPlural>(kind: K, ns: string, name: string) => {
    assertReady();
    const key = keys.obj(kind, ns, name);
    const raw = watch
      ? ((await readBatch(client, [key], (p) => p.get(key)))[0] as string | null)
      : await client.get(key);
    const obj = raw === null ? undefined : parseStored(kind, key, raw);
    if (isIndexedKind(kind)) seen?.set(seenKey(kind, ns, name), obj);
    return obj;
  };
  return {
    get,
    list: async <K extends KindPlural>(kind: K, ns?: string) => {
      assertReady();
      return (await readList(client, prefix, watch, kind, ns, logger, parseStored)).items;
    },
    async routeClaims(shape: string) {
      assertReady();
      const built = routeIndexBuiltKey(prefix);
      const set = routeIndexKey(prefix, shape);
      // Watched, so a trigger joining the shape (or the index being built) meanwhile makes the
      // write run again; the WATCH and both reads go out in one write.
      const [marker, members = []] = (await readBatch(
        client,
        watch ? [built, set] : undefined,
        (p) => p.get(built).smembers(set),
      )) as [string | null, string[] | undefined];
      if (marker === null) return undefined;
      const found: HttpTrigger[] = [];
      for (const m of members.sort()) {
        const [ns = "", name = ""] = m.split("/");
        const t = await get("httptriggers", ns, name);
        if (t) found.push(t);
      }
      return found;
    },
  };
}
