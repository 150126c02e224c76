import type { Redis } from "ioredis";
import {
  FizzError,
  KIND_PLURALS,
  type AnyObject,
  redisKeys,
  type HttpTrigger,
  type KindPlural,
  type ObjectsByPlural,
} from "@fizz/events";
import { redisReady, type Logger } from "@fizz/kit";
import { learnStored, listPage } from "./store-page";
import type {
  FunctionTriggers,
  Listing,
  ListingOf,
  PageOf,
  PageRequest,
  StoreReader,
  Writes,
} from "./store-types";
import { listIndexBuild, listIndexBuiltKey, mgetAll, readList } from "./store-list";
import { KnownJson, parseStored, pluralOf } from "./store-parse";
import { Relearn, RELEARN_PACE } from "./store-relearn";
import { seenKey, TxLanes } from "./store-tx";
import { buildFunctionIndex, isIndexedKind } from "./function-index";
import { readFunctionTriggers } from "./store-fn-triggers";
import { routeIndexBuiltKey, routeIndexKey, routeShape } from "./route-index";

/**
 * The registry's Redis store. Keys (under the configured prefix, default `fizz:v1:`):
 *   obj:<kind>:<ns>:<name>   the object as JSON (kind is the plural: environments, functions, httptriggers)
 *   idx:<kind>:<ns>          set of names in one namespace
 *   idx:<kind>               set of `ns/name` over every namespace
 *   lidx:<kind>              the same, sorted, for pages (store-list.ts)
 *   fnidx:<kind>:<ns>:<fn>  names of the triggers of one function, per kind (function-index.ts)
 *   secretdata:<ns>:<name>   a secret's values, sealed (secret-box.ts); written with its object
 *   code:<sha256 hex>        code bytes of registries before the Object Store; read only by the
 *                            start-up migration (code-migration.ts), never written any more
 *
 * Every write is one optimistic transaction: the body reads through a reader that WATCHes every key
 * it touches (objects, referenced objects, indexes, and each object an index lists), decides, and
 * returns the writes; they are applied in MULTI/EXEC, which Redis aborts if any watched key changed
 * meanwhile, and then the whole body runs again on fresh data. So two writers — in this process or
 * in another replica — can never both create one name, leave a dangling reference or claim one route.
 * Transactions: store-tx.ts; full listings and the list index: store-list.ts; pages: store-page.ts.
 */
export interface Store extends StoreReader {
  /** `list`, naming what it left out: an unreadable object does not fail the listing. */
  listing<K extends KindPlural>(kind: K, namespace?: string): Promise<Listing<K>>;
  /**
   * `listing` with each object as its JSON text, exactly what JSON.stringify of the parsed object
   * gives, for answers that only pass objects on: a stored text this process already found
   * readable is answered as it is, without parsing and checking it again (KnownJson). With
   * `maxBytes`, LIST_TOO_LARGE once the texts pass it (store-list.ts readList).
   */
  listingJson(kind: KindPlural, namespace?: string, maxBytes?: number): Promise<ListingOf<string>>;
  /**
   * One page of `listingJson`, in its order, from after the previous page's last object; each
   * object's JSON as UTF-8 bytes (the stored bytes themselves when known canonical).
   */
  pageJson(kind: KindPlural, req: PageRequest): Promise<PageOf<Buffer>>;
  /**
   * Adds every stored trigger to the route index and the function index and every object to the
   * list index, and marks each built (idempotent: an index already built is left as it is).
   * Answers the triggers added to the route index.
   */
  buildRouteIndex(): Promise<number>;
  /**
   * Per trigger kind, how many triggers name each of `functions` and the first `perFunction` of
   * them by name (JSON bytes), read through the function index (store-fn-triggers.ts); undefined
   * while the index is not built. Unreadable ones are left out and logged, as in a listing.
   */
  functionTriggers(
    functions: readonly { namespace: string; name: string }[],
    perFunction: number,
  ): Promise<Map<KindPlural, FunctionTriggers> | undefined>;
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

export { redisKeys, pluralOf };
export type {
  FunctionTriggers,
  Listing,
  ListingOf,
  PageOf,
  ObjectKey,
  PageCursor,
  PageRequest,
  StoreReader,
  Writes,
} from "./store-types";

export interface RedisStoreOptions {
  url: string;
  prefix: string;
  /** The shared client (reads); the store opens its own connections for transactions. */
  client: Redis;
  name: string;
  logger: Logger;
  onRetry?: () => void;
}

export class RedisStore implements Store {
  private readonly keys: ReturnType<typeof redisKeys>;
  private readonly tx: TxLanes;
  private readonly known = new KnownJson();
  /** Per kind, the largest text its last page read: sizes the next page's first read. */
  private readonly pageSizes = new Map<KindPlural, number>();
  private readonly relearn: Relearn;

  constructor(private readonly opts: RedisStoreOptions) {
    this.keys = redisKeys(opts.prefix);
    this.relearn = new Relearn(
      opts.client,
      (k, key, raw) => this.known.learn(k, key, raw),
      RELEARN_PACE,
      async (kinds) => {
        for (const kind of kinds) {
          this.known.bound(kind, await opts.client.scard(this.keys.kindIndex(kind)));
        }
      },
    );
    this.tx = new TxLanes({
      url: opts.url,
      prefix: opts.prefix,
      name: opts.name,
      logger: opts.logger,
      onRetry: opts.onRetry,
      assertReady: () => this.assertReady(),
      reader: (conn, seen) => this.reader(conn, true, seen),
      // A written or removed object's remembered text is forgotten, not replaced: learning the
      // new text here re-parsed, schema-checked and re-encoded every write after its commit
      // (creates fell from 376 to 240/s in bench/scale.ts and the registry held a digest per
      // function it had only written), for services that list rarely. The next listing learns
      // it, once; or, once writes have gone quiet, the re-learn (store-relearn.ts) does.
      onCommitted: (puts, removed) => {
        for (const p of puts) {
          this.known.forget(p.kind, p.key);
          this.relearn.note(p.kind, p.key);
        }
        for (const r of removed) this.known.forget(r.kind, r.key);
      },
    });
  }

  ready(): boolean {
    return redisReady(this.opts.client) && this.tx.ready();
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
    return this.readListing(kind, namespace, (k, key, raw) => this.known.object(k, key, raw));
  }

  listingJson(kind: KindPlural, namespace?: string, maxBytes?: number): Promise<ListingOf<string>> {
    return this.readListing(
      kind,
      namespace,
      (k, key, raw) => this.known.json(k, key, raw),
      maxBytes,
    );
  }

  pageJson(kind: KindPlural, req: PageRequest): Promise<PageOf<Buffer>> {
    return this.readPage(kind, req, (k, key, raw) => this.known.jsonBytes(k, key, raw));
  }

  /**
   * Pre-learns every stored object's text in the background (store-page.ts learnStored), riding
   * out Redis errors with a bounded back-off; `onRetry` hears of each failed step.
   */
  learnStored(
    signal: AbortSignal,
    onRetry?: (err: unknown, attempt: number) => void,
  ): Promise<number> {
    return learnStored(
      this.opts.client,
      this.opts.prefix,
      KIND_PLURALS,
      (k, key, raw) => this.known.learn(k, key, raw),
      signal,
      undefined,
      onRetry,
    );
  }

  private async readListing<K extends KindPlural, T>(
    kind: K,
    namespace: string | undefined,
    read: (kind: K, key: string, raw: string) => T,
    maxBytes?: number,
  ): Promise<ListingOf<T>> {
    this.assertReady();
    const { client, prefix, logger } = this.opts;
    const out = await readList(client, prefix, false, kind, namespace, logger, read, maxBytes);
    if (namespace === undefined) this.known.bound(kind, out.items.length + out.skipped.length);
    return out;
  }

  private async readPage<K extends KindPlural, T>(
    kind: K,
    req: PageRequest,
    read: (kind: K, key: string, raw: Buffer) => T,
  ): Promise<PageOf<T>> {
    this.assertReady();
    const parse = (k: K, key: string, raw: Buffer): T | undefined => {
      try {
        return read(k, key, raw);
      } catch (err) {
        this.opts.logger.error(
          { component: "store", err: (err as Error).message },
          "stored object left out of a listing: it does not match its schema",
        );
        return undefined;
      }
    };
    const { client, prefix } = this.opts;
    const page = await listPage(client, prefix, kind, req, parse, this.pageSizes);
    if (page.total !== undefined) this.known.bound(kind, page.total);
    return page;
  }

  async buildRouteIndex(): Promise<number> {
    this.assertReady();
    const [routes, lists] = await this.opts.client.mget(
      routeIndexBuiltKey(this.opts.prefix),
      listIndexBuiltKey(this.opts.prefix),
    );
    // Built once per Redis: every registry since keeps them current with each write.
    if (lists === null)
      await this.tx.enqueue(async (_r, conn) => ({
        writes: await listIndexBuild(conn, this.opts.prefix),
        result: undefined,
      }));
    // After the list index: the function index's build pages the triggers through it.
    await buildFunctionIndex(this.opts.client, this.opts.prefix, (body) =>
      this.tx.enqueue((_r, conn) => body(conn)),
    );
    if (routes !== null) return 0;
    return this.tx.enqueue(async (_r, conn) => {
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

  functionTriggers(
    functions: readonly { namespace: string; name: string }[],
    perFunction: number,
  ): Promise<Map<KindPlural, FunctionTriggers> | undefined> {
    this.assertReady();
    const { client, prefix, logger } = this.opts;
    return readFunctionTriggers(client, prefix, this.known, logger, functions, perFunction);
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
    const values = await mgetAll(conn, objKeys, true);
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
    return this.tx.enqueue(body);
  }

  close(): Promise<void> {
    this.relearn.close();
    return this.tx.close();
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
    seen?: Map<string, AnyObject | undefined>,
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
      if (isIndexedKind(kind)) seen?.set(seenKey(kind, ns, name), obj);
      return obj;
    };
    return {
      get,
      list: async <K extends KindPlural>(kind: K, ns?: string) => {
        assertReady();
        const logger = this.opts.logger;
        return (await readList(client, prefix, watch, kind, ns, logger, parseStored)).items;
      },
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
}
