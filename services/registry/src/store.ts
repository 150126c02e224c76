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
  Store,
  StoreReader,
  Writes,
} from "./store-types";
import { readList } from "./store-list";
import { KnownJson, pluralOf } from "./store-parse";
import { Relearn, RELEARN_PACE } from "./store-relearn";
import { TxLanes } from "./store-tx";
import { readFunctionTriggers } from "./store-fn-triggers";
import { buildIndexes } from "./store-indexes";
import { codeBlob, codeDigests } from "./store-code";
import { storeReader } from "./store-reader";
import { KnownPersist } from "./known-persist";

// The Store interface and its shapes live in store-types.ts; importers keep importing them from here.
export { redisKeys, pluralOf };
export type {
  FunctionTriggers,
  Store,
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
  /**
   * Keeps the known texts' digests across restarts (known-persist.ts): the fingerprint of this
   * code (codeFingerprint) and the key entries are sealed with (knownSealKey), or a promise of
   * them (the registry hashes its code while it connects; the first listing waits for it).
   * Unset or undefined: in memory only, as before.
   */
  persistKnown?: PersistKnown | Promise<PersistKnown | undefined>;
}

export interface PersistKnown {
  fingerprint: string;
  key: Buffer;
}

/** How long close() waits for the last batch of learnt digests to be written. */
const PERSIST_CLOSE_MS = 1000;

export class RedisStore implements Store {
  private readonly keys: ReturnType<typeof redisKeys>;
  private readonly tx: TxLanes;
  private readonly known: KnownJson;
  private persist: KnownPersist | undefined;
  /** The persisted digests' load, once it succeeded (a failed one is tried again by the next read). */
  private knownLoad: Promise<boolean> | undefined;
  /** Per kind, the largest text its last page read: sizes the next page's first read. */
  private readonly pageSizes = new Map<KindPlural, number>();
  private readonly relearn: Relearn;

  constructor(private readonly opts: RedisStoreOptions) {
    this.keys = redisKeys(opts.prefix);
    this.known = new KnownJson();
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
  async learnStored(
    signal: AbortSignal,
    onRetry?: (err: unknown, attempt: number) => void,
  ): Promise<number> {
    // What was persisted is trusted, not checked again.
    await this.loadKnown();
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

  /** Stored texts this process parsed and schema-checked so far (the rest were known). */
  knownChecks(): number {
    return this.known.checks;
  }

  private async readListing<K extends KindPlural, T>(
    kind: K,
    namespace: string | undefined,
    read: (kind: K, key: string, raw: string) => T,
    maxBytes?: number,
  ): Promise<ListingOf<T>> {
    this.assertReady();
    await this.loadKnown();
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
    await this.loadKnown();
    const { client, prefix } = this.opts;
    const page = await listPage(client, prefix, kind, req, parse, this.pageSizes);
    if (page.total !== undefined) this.known.bound(kind, page.total);
    return page;
  }

  buildRouteIndex(): Promise<number> {
    this.assertReady();
    const { client, prefix, logger } = this.opts;
    return buildIndexes(client, prefix, logger, (body) =>
      this.tx.enqueue((_r, conn) => body(conn)),
    );
  }

  async functionTriggers(
    functions: readonly { namespace: string; name: string }[],
    perFunction: number,
    maxBytes: number,
  ): Promise<Map<KindPlural, FunctionTriggers> | undefined> {
    this.assertReady();
    await this.loadKnown();
    const { client, prefix, logger } = this.opts;
    return readFunctionTriggers(
      client,
      prefix,
      this.known,
      logger,
      functions,
      perFunction,
      maxBytes,
    );
  }

  getCode(digestHex: string): Promise<Buffer | undefined> {
    this.assertReady();
    return codeBlob(this.opts.client, this.opts.prefix, digestHex);
  }

  codeDigests(): Promise<string[]> {
    this.assertReady();
    return codeDigests(this.opts.client, this.opts.prefix);
  }

  async getSecretData(namespace: string, name: string): Promise<string | undefined> {
    this.assertReady();
    return (await this.opts.client.get(this.keys.secretData(namespace, name))) ?? undefined;
  }

  transact<T>(body: (reader: StoreReader) => Promise<{ writes: Writes; result: T }>): Promise<T> {
    return this.tx.enqueue(body);
  }

  async close(): Promise<void> {
    this.relearn.close();
    if (this.persist) {
      const timer = new Promise<void>((resolve) => setTimeout(resolve, PERSIST_CLOSE_MS).unref());
      await Promise.race([this.persist.close(), timer]);
    }
    return this.tx.close();
  }

  /**
   * The persisted digests, read once before the first listing (one pipeline). A failed read is
   * tried again by the next listing; meanwhile listings check, as without persistence.
   */
  private async loadKnown(): Promise<void> {
    if (this.opts.persistKnown === undefined) return;
    this.knownLoad ??= this.startPersist();
    if (!(await this.knownLoad)) this.knownLoad = undefined;
  }

  private async startPersist(): Promise<boolean> {
    const { client, prefix, logger, persistKnown } = this.opts;
    if (!this.persist) {
      const given = await Promise.resolve(persistKnown).catch(() => undefined);
      if (!given) return true;
      const memory = (kind: KindPlural) => this.known.snapshot(kind);
      this.persist ??= new KnownPersist({ client, prefix, logger, memory, ...given });
      this.known.trustIn(this.persist);
    }
    return (await this.persist.load(KIND_PLURALS)) !== undefined;
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
    const { prefix, logger } = this.opts;
    return storeReader({
      client,
      prefix,
      logger,
      watch,
      seen,
      assertReady: () => this.assertReady(),
    });
  }
}
