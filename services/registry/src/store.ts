import { Redis } from "ioredis";
import {
  FizzError,
  Kinds,
  objectSchemas,
  type AnyObject,
  type HttpTrigger,
  type Kind,
  type KindPlural,
  type ObjectsByPlural,
  type SkippedObject,
} from "@fizz/events";
import { backoffMs, redisReady, redisTls, retryUntil, type Logger } from "@fizz/kit";
import { listPage, type ListPage, type PageRequest } from "./store-page";
import { routeIndexBuiltKey, routeIndexEdits, routeIndexKey, routeShape } from "./route-index";

/**
 * The registry's Redis store. Keys (under the configured prefix, default `fizz:v1:`):
 *   obj:<kind>:<ns>:<name>   the object as JSON (kind is the plural: environments, functions, httptriggers)
 *   idx:<kind>:<ns>          set of names in one namespace
 *   idx:<kind>               set of `ns/name` over every namespace
 *   secretdata:<ns>:<name>   a secret's values, sealed (secret-box.ts); written with its object
 *   code:<sha256 hex>        code bytes of registries before the Object Store; read only by the
 *                            start-up migration (code-migration.ts), never written any more
 *
 * Every write is one optimistic transaction: the body reads through a reader that WATCHes every key
 * it touches (objects, referenced objects, indexes, and each object an index lists), decides, and
 * returns the writes; they are applied in MULTI/EXEC, which Redis aborts if any watched key changed
 * meanwhile, and then the whole body runs again on fresh data. So two writers — in this process or
 * in another replica — can never both create one name, leave a dangling reference or claim one route.
 */
export interface StoreReader {
  get<K extends KindPlural>(
    kind: K,
    namespace: string,
    name: string,
  ): Promise<ObjectsByPlural[K] | undefined>;
  /** Sorted by namespace, then name; without a namespace, every namespace. */
  list<K extends KindPlural>(kind: K, namespace?: string): Promise<ObjectsByPlural[K][]>;
  /**
   * The HTTP triggers (any namespace) whose route has this shape (route-index.ts), or undefined
   * while the route index is not built yet (then `list("httptriggers")` is the way).
   */
  routeClaims(shape: string): Promise<HttpTrigger[] | undefined>;
}

export interface ObjectKey {
  kind: KindPlural;
  namespace: string;
  name: string;
}

export interface Writes {
  put?: AnyObject[];
  /** Extra set edits beside the objects' own (the route index build); route-index.ts. */
  index?: { key: string; add?: string; remove?: string }[];
  /** A key set to "1" with the writes (the route index's built marker). */
  marker?: string;
  remove?: ObjectKey[];
  /** Sealed secret values, each beside its Secret object (removing the object removes them). */
  secretData?: { namespace: string; name: string; sealed: string }[];
}

/** A listing outside a transaction: the readable objects, and the stored ones it left out. */
export interface Listing<K extends KindPlural> {
  items: ObjectsByPlural[K][];
  /** Stored objects that do not match their schema, sorted like `items`. */
  skipped: SkippedObject[];
}

export interface Store extends StoreReader {
  /** `list`, naming what it left out: an unreadable object does not fail the listing. */
  listing<K extends KindPlural>(kind: K, namespace?: string): Promise<Listing<K>>;
  /** One page of a listing, in its order, from after the previous page's last object. */
  page<K extends KindPlural>(kind: K, req: PageRequest): Promise<ListPage<K>>;
  /** Adds every stored trigger to the route index and marks it built (idempotent). */
  buildRouteIndex(): Promise<number>;
  /** A code blob of the Redis era (before the Object Store), for the migration. */
  getCode(digestHex: string): Promise<Buffer | undefined>;
  /** Hex digests of every Redis-era code blob. */
  codeDigests(): Promise<string[]>;
  /** A secret's sealed values, or undefined when there is no such secret. */
  getSecretData(namespace: string, name: string): Promise<string | undefined>;
  /** Runs `body` until its writes commit on unchanged reads; its errors abort without writing. */
  transact<T>(body: (reader: StoreReader) => Promise<{ writes: Writes; result: T }>): Promise<T>;
  ready(): boolean;
  close(): Promise<void>;
}

import { redisKeys } from "@fizz/events";
export { redisKeys };

const PLURAL_OF = Object.fromEntries(
  Object.entries(Kinds).map(([plural, kind]) => [kind, plural]),
) as Record<Kind, KindPlural>;

export function pluralOf(obj: AnyObject): KindPlural {
  return PLURAL_OF[obj.kind];
}

/** Write conflicts on one key are short-lived; past this many tries something is hammering it. */
const MAX_ATTEMPTS = 8;

export interface RedisStoreOptions {
  url: string;
  prefix: string;
  /** The shared client (reads); the store opens its own connection for transactions. */
  client: Redis;
  name: string;
  logger: Logger;
  onRetry?: () => void;
}

/**
 * Transactions run on a few connections side by side: WATCH state is per connection, so the
 * transactions of one connection must not interleave, and with a single connection every write
 * waited for the round trips of every write before it (writes of different objects do not
 * conflict, and those that do are caught by WATCH whichever connection they run on).
 */
const TX_LANES = 8;

/** One transaction connection and the queue of transactions on it. */
interface TxLane {
  conn: Redis;
  /** Bumped when the connection closes: WATCHes do not survive a reconnect. */
  epoch: number;
  /** WATCH state is per connection, so transactions on one lane must not interleave. */
  chain: Promise<unknown>;
  /** Transactions queued or running on this lane. */
  queued: number;
}

export class RedisStore implements Store {
  private readonly keys: ReturnType<typeof redisKeys>;
  private readonly lanes: TxLane[];

  constructor(private readonly opts: RedisStoreOptions) {
    this.keys = redisKeys(opts.prefix);
    const log = opts.logger.child({ component: "store" });
    // Fail fast instead of queueing or resending: a MULTI/EXEC replayed on a fresh connection
    // would run without the WATCHes it depends on.
    const { url, tls } = redisTls(opts.url);
    this.lanes = Array.from({ length: TX_LANES }, (_, i) => {
      const lane: TxLane = {
        conn: new Redis(url, {
          ...tls,
          connectionName: `${opts.name}-tx${i}`,
          enableOfflineQueue: false,
          autoResendUnfulfilledCommands: false,
          maxRetriesPerRequest: 1,
          retryStrategy: (times) => backoffMs(times, 200, 2000),
        }),
        epoch: 0,
        chain: Promise.resolve(),
        queued: 0,
      };
      lane.conn.on("close", () => lane.epoch++);
      lane.conn.on("error", (err: Error) => log.debug({ err: err.message }, "redis (tx) error"));
      return lane;
    });
  }

  ready(): boolean {
    return redisReady(this.opts.client) && this.lanes.every((l) => redisReady(l.conn));
  }

  get<K extends KindPlural>(
    kind: K,
    namespace: string,
    name: string,
  ): Promise<ObjectsByPlural[K] | undefined> {
    return this.reader(this.opts.client, false).get(kind, namespace, name);
  }

  list<K extends KindPlural>(kind: K, namespace?: string): Promise<ObjectsByPlural[K][]> {
    return this.reader(this.opts.client, false).list(kind, namespace);
  }

  routeClaims(shape: string): Promise<HttpTrigger[] | undefined> {
    return this.reader(this.opts.client, false).routeClaims(shape);
  }

  listing<K extends KindPlural>(kind: K, namespace?: string): Promise<Listing<K>> {
    return this.readList(this.opts.client, false, kind, namespace);
  }

  page<K extends KindPlural>(kind: K, req: PageRequest): Promise<ListPage<K>> {
    this.assertReady();
    return listPage(this.opts.client, this.keys, kind, req, (k, key, raw) => {
      try {
        return parseStored(k, key, raw);
      } catch (err) {
        this.opts.logger.error(
          { component: "store", err: (err as Error).message },
          "stored object left out of a listing: it does not match its schema",
        );
        return undefined;
      }
    });
  }

  async buildRouteIndex(): Promise<number> {
    this.assertReady();
    // Built once per Redis: every registry since keeps it current with each trigger write.
    if ((await this.opts.client.get(routeIndexBuiltKey(this.opts.prefix))) !== null) return 0;
    return this.enqueue(async (_r, conn) => {
      const claims = await this.storedRouteShapes(conn);
      const built = routeIndexBuiltKey(this.opts.prefix);
      return {
        writes: {
          index: claims.map(({ member, shape }) => ({
            key: routeIndexKey(this.opts.prefix, shape),
            add: member,
          })),
          marker: built,
        },
        result: claims.length,
      };
    });
  }

  /**
   * Every stored trigger's route shape, watched. A trigger the registry cannot read (written by a
   * newer registry, or behind its back) must not stop the build — it runs in the start-up tasks,
   * and the registry is not ready before they finish: its shape is taken from the JSON as it is
   * (a member is only a candidate), and one without even a route is left out, logged.
   */
  private async storedRouteShapes(conn: Redis): Promise<{ member: string; shape: string }[]> {
    const index = this.keys.kindIndex("httptriggers");
    const [, members] = await Promise.all([conn.watch(index), conn.smembers(index)]);
    if (members.length === 0) return [];
    const objKeys = members.map((m) => {
      const [ns = "", name = ""] = m.split("/");
      return this.keys.obj("httptriggers", ns, name);
    });
    const [, values] = await Promise.all([conn.watch(...objKeys), conn.mget(...objKeys)]);
    const out: { member: string; shape: string }[] = [];
    values.forEach((raw, i) => {
      if (raw === null) return;
      const member = members[i] ?? "";
      let spec: unknown;
      try {
        spec = (JSON.parse(raw) as { spec?: unknown } | null)?.spec;
      } catch {
        spec = undefined;
      }
      const s = (typeof spec === "object" && spec !== null ? spec : {}) as Record<string, unknown>;
      const str = (v: unknown) => (typeof v === "string" ? v : undefined);
      const [path, prefix, host] = [str(s.path), str(s.prefix), str(s.host)];
      if (path === undefined && prefix === undefined) {
        this.opts.logger.error(
          { component: "store", trigger: member },
          "stored http trigger left out of the route index: no route can be read from it",
        );
        return;
      }
      const route = {
        ...(path !== undefined ? { path } : {}),
        ...(prefix !== undefined ? { prefix } : {}),
        ...(host !== undefined ? { host } : {}),
      };
      out.push({ member, shape: routeShape(route) });
    });
    return out;
  }

  async getCode(digestHex: string): Promise<Buffer | undefined> {
    this.assertReady();
    return (await this.opts.client.getBuffer(this.keys.code(digestHex))) ?? undefined;
  }

  async codeDigests(): Promise<string[]> {
    this.assertReady();
    const pattern = `${this.keys.code("")}*`;
    const prefixLength = pattern.length - 1;
    const out: string[] = [];
    let cursor = "0";
    do {
      const [next, keys] = await this.opts.client.scan(cursor, "MATCH", pattern, "COUNT", 500);
      cursor = next;
      for (const k of keys) {
        const hex = k.slice(prefixLength);
        if (/^[0-9a-f]{64}$/.test(hex)) out.push(hex);
      }
    } while (cursor !== "0");
    return [...new Set(out)].sort();
  }

  async getSecretData(namespace: string, name: string): Promise<string | undefined> {
    this.assertReady();
    return (await this.opts.client.get(this.keys.secretData(namespace, name))) ?? undefined;
  }

  transact<T>(body: (reader: StoreReader) => Promise<{ writes: Writes; result: T }>): Promise<T> {
    return this.enqueue(body);
  }

  /** `transact`, the body also given the lane's connection (its reads there must WATCH). */
  private enqueue<T>(
    body: (reader: StoreReader, conn: Redis) => Promise<{ writes: Writes; result: T }>,
  ): Promise<T> {
    // The lane with the fewest transactions waiting.
    const lane = this.lanes.reduce((a, b) => (b.queued < a.queued ? b : a));
    lane.queued++;
    const run = lane.chain.then(() => this.runTransaction(lane, body));
    lane.chain = run.catch(() => undefined).finally(() => lane.queued--);
    return run;
  }

  async close(): Promise<void> {
    await Promise.all(
      this.lanes.map(async (l) => {
        await l.chain;
        await l.conn.quit().catch(() => l.conn.disconnect());
      }),
    );
  }

  private async runTransaction<T>(
    lane: TxLane,
    body: (reader: StoreReader, conn: Redis) => Promise<{ writes: Writes; result: T }>,
  ): Promise<T> {
    try {
      // Only a lost race (a watched key changed, or the connection's WATCHes were lost) is
      // retried, after a short back-off; any other error ends the transaction at once.
      return await retryUntil(
        async () => {
          this.assertReady();
          const epoch = lane.epoch;
          let out: { writes: Writes; result: T };
          // The triggers this attempt read (watched): their old routes leave the route index.
          const seen = new Map<string, HttpTrigger | undefined>();
          try {
            out = await body(this.reader(lane.conn, true, seen), lane.conn);
          } catch (err) {
            await lane.conn.unwatch().catch(() => undefined);
            throw err;
          }
          if (epoch === lane.epoch && (await this.exec(lane.conn, out.writes, seen)))
            return out.result;
          this.opts.onRetry?.();
          throw new WriteConflict();
        },
        {
          attempts: MAX_ATTEMPTS,
          baseMs: 5,
          maxMs: 200,
          retryable: (err) => err instanceof WriteConflict,
        },
      );
    } catch (err) {
      if (!(err instanceof WriteConflict)) throw err;
      throw new FizzError(
        "UNAVAILABLE",
        "too many concurrent writes to the same objects; try again",
        { retryable: true },
      );
    }
  }

  /** false when a watched key changed (EXEC aborted). */
  private async exec(
    tx: Redis,
    writes: Writes,
    seen: Map<string, HttpTrigger | undefined>,
  ): Promise<boolean> {
    const index = await this.routeIndexWrites(tx, writes, seen);
    const m = tx.multi();
    for (const { key, add, remove } of index) {
      if (remove !== undefined) m.srem(key, remove);
      if (add !== undefined) m.sadd(key, add);
    }
    if (writes.marker !== undefined) m.set(writes.marker, "1");
    for (const obj of writes.put ?? []) {
      const kind = pluralOf(obj);
      const { namespace: ns, name } = obj.metadata;
      m.set(this.keys.obj(kind, ns, name), JSON.stringify(obj));
      m.sadd(this.keys.nsIndex(kind, ns), name);
      m.sadd(this.keys.kindIndex(kind), `${ns}/${name}`);
    }
    for (const { kind, namespace: ns, name } of writes.remove ?? []) {
      m.del(this.keys.obj(kind, ns, name));
      m.srem(this.keys.nsIndex(kind, ns), name);
      m.srem(this.keys.kindIndex(kind), `${ns}/${name}`);
      if (kind === "secrets") m.del(this.keys.secretData(ns, name));
    }
    for (const d of writes.secretData ?? [])
      m.set(this.keys.secretData(d.namespace, d.name), d.sealed);
    const results = await m.exec();
    if (results === null) return false;
    const failed = results.find(([err]) => err);
    if (failed?.[0]) throw FizzError.from(failed[0]);
    return true;
  }

  /**
   * The route index follows every trigger write: the new route's set gains the trigger, the old
   * one's (when the route changed, or the trigger goes) loses it. A trigger the body did not read
   * is read here, watched like the body's reads.
   */
  private async routeIndexWrites(
    tx: Redis,
    writes: Writes,
    seen: Map<string, HttpTrigger | undefined>,
  ): Promise<{ key: string; add?: string; remove?: string }[]> {
    const out = [...(writes.index ?? [])];
    const before = async (ns: string, name: string): Promise<HttpTrigger | undefined> => {
      const id = `${ns}/${name}`;
      if (seen.has(id)) return seen.get(id);
      const key = this.keys.obj("httptriggers", ns, name);
      const [, raw] = await Promise.all([tx.watch(key), tx.get(key)]);
      return raw === null ? undefined : parseStored("httptriggers", key, raw);
    };
    const edit = async (ns: string, name: string, after: HttpTrigger | undefined) => {
      const member = `${ns}/${name}`;
      const { add, remove } = routeIndexEdits(await before(ns, name), after);
      const key = (shape: string) => routeIndexKey(this.opts.prefix, shape);
      if (remove !== undefined) out.push({ key: key(remove), remove: member });
      if (add !== undefined) out.push({ key: key(add), add: member });
    };
    for (const obj of writes.put ?? [])
      if (obj.kind === "HttpTrigger") await edit(obj.metadata.namespace, obj.metadata.name, obj);
    for (const r of writes.remove ?? [])
      if (r.kind === "httptriggers") await edit(r.namespace, r.name, undefined);
    return out;
  }

  private assertReady(): void {
    if (!this.ready())
      throw new FizzError("UNAVAILABLE", "the registry's store (Redis) is not connected", {
        retryable: true,
      });
  }

  private reader(
    client: Redis,
    watch: boolean,
    seen?: Map<string, HttpTrigger | undefined>,
  ): StoreReader {
    const keys = this.keys;
    const prefix = this.opts.prefix;
    const assertReady = () => this.assertReady();
    const get = async <K extends KindPlural>(kind: K, ns: string, name: string) => {
      assertReady();
      const key = keys.obj(kind, ns, name);
      // WATCH and GET in one round trip: one connection answers in order.
      const [, raw] = await Promise.all([watch ? client.watch(key) : undefined, client.get(key)]);
      const obj = raw === null ? undefined : parseStored(kind, key, raw);
      if (kind === "httptriggers") seen?.set(`${ns}/${name}`, obj as HttpTrigger | undefined);
      return obj;
    };
    return {
      get,
      list: async <K extends KindPlural>(kind: K, ns?: string) =>
        (await this.readList(client, watch, kind, ns)).items,
      async routeClaims(shape: string) {
        assertReady();
        const built = routeIndexBuiltKey(prefix);
        const set = routeIndexKey(prefix, shape);
        // Watched, so a trigger joining the shape (or the index being built) meanwhile makes the
        // write run again; the WATCH and both reads go out in one round trip.
        const [, marker, members] = await Promise.all([
          watch ? client.watch(built, set) : Promise.resolve("OK"),
          client.get(built),
          client.smembers(set),
        ]);
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

  private async readList<K extends KindPlural>(
    client: Redis,
    watch: boolean,
    kind: K,
    ns: string | undefined,
  ): Promise<Listing<K>> {
    this.assertReady();
    const keys = this.keys;
    const index = ns === undefined ? keys.kindIndex(kind) : keys.nsIndex(kind, ns);
    const [, members] = await Promise.all([
      watch ? client.watch(index) : undefined,
      client.smembers(index),
    ]);
    const names = members.map((m) => {
      if (ns !== undefined) return { namespace: ns, name: m };
      const [mns = "", mname = ""] = m.split("/");
      return { namespace: mns, name: mname };
    });
    const objKeys = names.map((n) => keys.obj(kind, n.namespace, n.name));
    if (objKeys.length === 0) return { items: [], skipped: [] };
    // Watch each listed object too: an update changes an object without touching the index.
    const [, values] = await Promise.all([
      watch ? client.watch(...objKeys) : undefined,
      client.mget(...objKeys),
    ]);
    const items: ObjectsByPlural[K][] = [];
    const skipped: SkippedObject[] = [];
    values.forEach((raw, i) => {
      if (raw === null) return;
      // A write decides over everything it reads, so there an unreadable object refuses it.
      if (watch) {
        items.push(parseStored(kind, objKeys[i] ?? "", raw));
        return;
      }
      // A listing leaves it out, says why, and names it in `skipped`: one object written behind
      // the registry's back must not stop every service from learning all the others, nor may
      // they take it for deleted.
      try {
        items.push(parseStored(kind, objKeys[i] ?? "", raw));
      } catch (err) {
        skipped.push(names[i]!);
        this.opts.logger.error(
          { component: "store", err: (err as Error).message },
          "stored object left out of a listing: it does not match its schema",
        );
      }
    });
    return {
      items: items.sort(byNamespaceAndName),
      skipped: skipped.sort(byNamespaceAndNameOf),
    };
  }
}

function parseStored<K extends KindPlural>(kind: K, key: string, raw: string): ObjectsByPlural[K] {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    throw new FizzError("INTERNAL", `stored object ${key} is not JSON`, { cause: err });
  }
  const parsed = objectSchemas[kind].safeParse(value);
  if (!parsed.success) {
    throw new FizzError(
      "INTERNAL",
      `stored object ${key} does not match its schema: ${parsed.error.issues[0]?.message}`,
    );
  }
  return parsed.data as ObjectsByPlural[K];
}

function byNamespaceAndName(a: AnyObject, b: AnyObject): number {
  return byNamespaceAndNameOf(a.metadata, b.metadata);
}

function byNamespaceAndNameOf(a: SkippedObject, b: SkippedObject): number {
  return compare(a.namespace, b.namespace) || compare(a.name, b.name);
}

/** Code-point order: names are ASCII, and locale rules would make the order depend on the host. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A transaction lost its optimistic race: retried by runTransaction, never seen by callers. */
class WriteConflict extends Error {
  override readonly name = "WriteConflict";
}
