import {
  DNS1123_LABEL,
  FizzError,
  LIST_DEFAULT_LIMIT,
  LIST_MAX_LIMIT,
  type KindPlural,
  type SkippedObject,
} from "@fizz/events";
import type { Store } from "./store";
import type { PageCursor, PageRequest } from "./store-types";
import { checkKind, checkName } from "./validation";

/**
 * Paginated listing (REST `?limit=&continue=`, NATS `registry.list`), Kubernetes-style: `limit`
 * asks for a page of at most that many objects (1..LIST_MAX_LIMIT), `continue` is the opaque
 * token the previous page answered with (then `limit` defaults to LIST_DEFAULT_LIMIT). With
 * neither, the whole listing in one answer — what every client before pagination expects, so none
 * of them silently sees only a first page.
 *
 * The token names the last object of the previous page (versioned, base64url JSON); a page is
 * everything after it, so an object present from the first page to the last is listed exactly
 * once however many are created or deleted in between. It also names its listing (kind, and the
 * namespace or every namespace): a position in another listing would silently skip objects (a
 * namespace's token continuing a listing of every namespace skips all namespaces before it), so
 * such a token is refused.
 */
export interface ListParams {
  limit?: unknown;
  continue?: unknown;
}

/** The page asked for, or undefined for the whole listing. */
export function pageRequest(
  params: ListParams,
  kind: KindPlural,
  namespace?: string,
): PageRequest | undefined {
  const { limit, continue: token } = params;
  if (limit === undefined && token === undefined) return undefined;
  return {
    namespace,
    limit: limit === undefined ? LIST_DEFAULT_LIMIT : parseLimit(limit),
    after: token === undefined ? undefined : parseToken(token, kind, namespace),
  };
}

/** A listing answer with each object as its JSON text (Store.listingJson), or bytes (pageJson). */
export interface JsonListAnswer {
  items: readonly (string | Buffer)[];
  skipped: SkippedObject[];
  continue?: string;
}

/** How many bytes of objects one list answer may hold. */
export interface ListBounds {
  /** A page's budget: it ends before the object that would pass it (always at least one). */
  pageBytes: number;
  /** Every object without paging: past it, LIST_TOO_LARGE (the caller must page). */
  allBytes: number;
}

/**
 * A listing as the caller asked for it, with each object as its JSON text: the REST list and
 * `registry.list` only pass objects on, so they splice the stored JSON into their answer instead of
 * parsing, checking and encoding every object of every page again. Without `limit` and `continue`,
 * every object (no token), up to `bounds.allBytes`: objects may be megabytes, and an unbounded
 * answer held all of them in Redis's output buffer and in this process at once. Every caller in
 * the tree pages (the CLI, services through followRegistryListing); the console has its own
 * endpoint.
 */
export async function listJson(
  store: Store,
  kindParam: string,
  namespace: string | undefined,
  params: ListParams,
  bounds: ListBounds,
): Promise<JsonListAnswer> {
  const kind = checkKind(kindParam);
  const ns = namespace === undefined ? undefined : checkName(namespace, "namespace");
  const req = pageRequest(params, kind, ns);
  if (!req) return store.listingJson(kind, ns, bounds.allBytes);
  const page = await store.pageJson(kind, { ...req, maxBytes: bounds.pageBytes });
  return {
    items: page.items,
    skipped: page.skipped,
    ...(page.next ? { continue: encodeContinue(page.next, kind, ns) } : {}),
  };
}

const COMMA = 0x2c; // ","

/**
 * The JSON of `{ items, skipped?, continue? }` with the items' JSON spliced in, as UTF-8 bytes:
 * byte for byte what JSON.stringify gives for the parsed objects (same keys, same order; no
 * spaces), between `around.before` and `around.after` (an envelope). Items that are bytes (a
 * page's, store-page.ts) are copied into the answer as they are, never decoded to strings.
 */
export function listBodyJson(
  items: readonly (string | Buffer)[],
  skipped?: SkippedObject[],
  next?: string,
  around: { before: string; after: string } = { before: "", after: "" },
): Buffer {
  const tail =
    "]" +
    (skipped === undefined ? "" : `,"skipped":${JSON.stringify(skipped)}`) +
    (next === undefined ? "" : `,"continue":${JSON.stringify(next)}`) +
    "}" +
    around.after;
  const head = `${around.before}{"items":[`;
  if (items.every((item) => typeof item === "string"))
    return Buffer.from(head + items.join(",") + tail);
  // One allocation, items copied in place: a parts array for Buffer.concat (item, comma, item...)
  // was two slots and a Buffer per comma-joined object, garbage on every page.
  let size = Buffer.byteLength(head) + Buffer.byteLength(tail) + Math.max(0, items.length - 1);
  for (const item of items)
    size += typeof item === "string" ? Buffer.byteLength(item) : item.length;
  const out = Buffer.allocUnsafe(size);
  let at = out.write(head);
  items.forEach((item, i) => {
    if (i > 0) at = out.writeUInt8(COMMA, at);
    at += typeof item === "string" ? out.write(item, at) : item.copy(out, at);
  });
  at += out.write(tail, at);
  return out.subarray(0, at);
}

/** `in`: the listing's namespace, or `*` for every namespace. */
export function encodeContinue(cursor: PageCursor, kind: KindPlural, namespace?: string): string {
  const token = { v: 1, k: kind, in: namespace ?? "*", ns: cursor.namespace, name: cursor.name };
  return Buffer.from(JSON.stringify(token)).toString("base64url");
}

function parseLimit(raw: unknown): number {
  const n =
    typeof raw === "number"
      ? raw
      : typeof raw === "string" && /^\d{1,9}$/.test(raw)
        ? Number(raw)
        : NaN;
  if (!Number.isInteger(n) || n < 1 || n > LIST_MAX_LIMIT)
    throw new FizzError(
      "VALIDATION_FAILED",
      `limit: must be a whole number from 1 to ${LIST_MAX_LIMIT}`,
      { field: "limit" },
    );
  return n;
}

function parseToken(raw: unknown, kind: KindPlural, namespace: string | undefined): PageCursor {
  const bad = (why: string): never => {
    throw new FizzError(
      "VALIDATION_FAILED",
      `continue: ${why}; pass the token of the previous page's answer unchanged, or leave it out to start again`,
      { field: "continue" },
    );
  };
  if (
    typeof raw !== "string" ||
    raw.length === 0 ||
    raw.length > 400 ||
    !/^[A-Za-z0-9_-]+$/.test(raw)
  )
    return bad("not a continue token");
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(raw, "base64url").toString("utf8"));
  } catch {
    return bad("not a continue token");
  }
  const v = value as { v?: unknown; k?: unknown; in?: unknown; ns?: unknown; name?: unknown };
  if (
    typeof value !== "object" ||
    value === null ||
    v.v !== 1 ||
    typeof v.k !== "string" ||
    typeof v.in !== "string" ||
    typeof v.ns !== "string" ||
    typeof v.name !== "string" ||
    !DNS1123_LABEL.test(v.ns) ||
    !DNS1123_LABEL.test(v.name)
  )
    return bad("not a continue token");
  if (v.k !== kind) return bad(`the token belongs to a listing of ${v.k}, not ${kind}`);
  const scope = (s: string) => (s === "*" ? "every namespace" : `namespace "${s}"`);
  if (v.in !== (namespace ?? "*"))
    return bad(`the token belongs to a listing of ${scope(v.in)}, not ${scope(namespace ?? "*")}`);
  return { namespace: v.ns, name: v.name };
}
