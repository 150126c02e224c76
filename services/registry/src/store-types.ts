import type {
  AnyObject,
  HttpTrigger,
  KindPlural,
  ObjectsByPlural,
  SkippedObject,
} from "@fizz/events";

// The store's shapes, apart from its implementation: store.ts, its transactions (store-tx.ts),
// listings (store-list.ts) and pages (store-page.ts) share them without importing each other.

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
  /** Sorted sets replaced whole with these members (the list index build); store-list.ts. */
  listIndex?: { key: string; members: string[] }[];
  /** A key set to "1" with the writes (the route index's built marker). */
  marker?: string;
  remove?: ObjectKey[];
  /** Sealed secret values, each beside its Secret object (removing the object removes them). */
  secretData?: { namespace: string; name: string; sealed: string }[];
}

/** A listing outside a transaction: the readable objects, and the stored ones it left out. */
export interface ListingOf<T> {
  items: T[];
  /** Stored objects that do not match their schema, sorted like `items`. */
  skipped: SkippedObject[];
}
export type Listing<K extends KindPlural> = ListingOf<ObjectsByPlural[K]>;

/** Where a page starts: after this object (exclusive), in the listing's order. */
export interface PageCursor {
  namespace: string;
  name: string;
}

export interface PageRequest {
  /** Without one, every namespace. */
  namespace?: string | undefined;
  limit: number;
  after?: PageCursor | undefined;
  /**
   * The page's byte budget: it ends before the object whose JSON would take it past this (always
   * at least one object), and its texts are read from Redis in chunks up to it (store-page-read.ts).
   * NATS: half the connection's max_payload; REST: FIZZ_LIST_PAGE_MAX_BYTES.
   */
  maxBytes?: number | undefined;
}

export interface PageOf<T> {
  items: T[];
  skipped: SkippedObject[];
  /** The last object of this page when more follow; undefined on the last page. */
  next?: PageCursor;
  /** How many objects of the kind were stored when the page was read (the sorted set's size). */
  total?: number;
}

/** One kind's triggers of a page of functions, by the function index (Store.functionTriggers). */
export interface FunctionTriggers {
  /**
   * Per function (in the order asked), how many triggers of the kind name it: the index set's
   * size, less the members read and found gone or no longer its own.
   */
  counts: number[];
  /** The first triggers of each function by name (at most `perFunction` each), as JSON bytes. */
  items: { fn: number; bytes: Buffer }[];
}

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
 * Transactions: store-tx.ts; full listings and the list index: store-list.ts; pages: store-page.ts;
 * reads: store-reader.ts; index builds: store-indexes.ts; triggers by function:
 * store-fn-triggers.ts; Redis-era code: store-code.ts.
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
   * while the index is not built. Unreadable ones are left out and logged, as in a listing. Their
   * texts are read within `maxBytes` together: past it, fewer are answered (still counted).
   */
  functionTriggers(
    functions: readonly { namespace: string; name: string }[],
    perFunction: number,
    maxBytes: number,
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
