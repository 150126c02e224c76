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
