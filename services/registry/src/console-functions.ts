import {
  LIST_DEFAULT_LIMIT,
  LIST_MAX_LIMIT,
  type AnyObject,
  type FunctionObject,
  type Instance,
  type KindPlural,
} from "@fizz/events";
import { inTurns } from "./in-turns";
import { encodeContinue, pageRequest, type ListParams } from "./list-params";
import type { PageCursor, Store } from "./store";

/**
 * The console's function listing, a page at a time: `GET /v1/console/functions?limit=&continue=`
 * pages over functions like every other list (list-params.ts: the same `limit`, the same tokens,
 * a byte budget per page), and joins routes, triggers and instance counts for the page's functions
 * only. It used to read every function, every trigger of every kind and join them on each call:
 * at 10,000 functions every page view read and parsed all of them, and past the unpaged byte
 * bound it failed as a whole.
 *
 * Triggers of a page: read through the store's function index (function-index.ts: per kind,
 * the trigger names of each function, kept in each trigger write's transaction), only the page's
 * functions' triggers, fetched by key in chunks (answers exact and current). A row holds at most
 * ROW_ITEMS routes and ROW_ITEMS triggers, the first by kind then name, with how many there are and
 * whether more exist: it used to hold all of them, so one function with 50,000 triggers made its
 * row, the page and the one-row answer unbounded in memory and size. Until the index is built
 * (a store written before it, at start-up) the page falls back to the namespace scan below: a
 * trigger's function is always in the trigger's own namespace (references.ts), so each namespace
 * of the page's functions is read through the list index's namespace range, a bounded page at a
 * time, keeping only those of the page's functions — memory a few trigger pages
 * (TRIGGER_SCANS_AT_ONCE), work O(triggers of the page's namespaces).
 */
interface FunctionSummary {
  namespace: string;
  name: string;
  revision: number;
  environment: string;
  /** The first ROW_ITEMS routes (HTTP triggers) by name; `routesTotal` counts them all. */
  routes: Record<string, unknown>[];
  routesTotal: number;
  /** Whether the function has routes past `routes` (routesTotal > routes.length). */
  routesMore: boolean;
  /** The first ROW_ITEMS mq, time and watch triggers, in kind then name order. */
  triggers: Record<string, unknown>[];
  triggersTotal: number;
  triggersMore: boolean;
  instances: { specialized: number; current: number };
}

export interface InstancesView {
  list: Instance[];
  /** False when the poolkeeper did not answer (counts are then 0). */
  known: boolean;
}

interface ConsoleFunctionsPage {
  items: FunctionSummary[];
  continue?: string;
  instancesKnown: boolean;
}

/** Kinds shown in a function's "triggers" column (HTTP triggers are its routes). */
const TRIGGER_KINDS = ["mqtriggers", "timetriggers", "watchtriggers"] as const;
const JOINED_KINDS = ["httptriggers", ...TRIGGER_KINDS] as const;

/**
 * Trigger scans (one kind in one namespace) running at once for a listing page: each holds a
 * trigger page (up to LIST_MAX_LIMIT triggers or the page budget) while it is matched, so a page
 * holds at most this many. 8: a page of 100 functions in 100 namespaces (400 small scans) took
 * ~124 ms against ~100 ms with every scan at once, ~131 ms with 4 (medians of 9 alternating
 * rounds on a loaded 2-core machine).
 */
export const TRIGGER_SCANS_AT_ONCE = 8;

/**
 * Routes, and triggers, one row holds at most: in a page of rows (up to LIST_MAX_LIMIT rows, so a
 * page's joined part is at most 1000 x 10 short specs, a route's path at most 1 KiB), and in the
 * one-function answer (the console's function view, which shows more).
 */
export const ROW_ITEMS = { page: 5, one: 100 } as const;

/**
 * One page of the listing. Without `limit` and `continue` it is the first page of
 * LIST_DEFAULT_LIMIT functions (never the whole unbounded listing); `continue` says more follow.
 */
export async function consoleFunctionsPage(
  store: Store,
  params: ListParams,
  pageBytes: number,
  instances: () => Promise<InstancesView>,
): Promise<ConsoleFunctionsPage> {
  const req = pageRequest(params, "functions") ?? { limit: LIST_DEFAULT_LIMIT };
  const [page, inst] = await Promise.all([
    store.pageJson("functions", { ...req, maxBytes: pageBytes }),
    instances(),
  ]);
  const functions = page.items.map((raw) => JSON.parse(raw.toString("utf8")) as FunctionObject);
  const items = await summarize(store, functions, inst, pageBytes, ROW_ITEMS.page);
  return {
    items,
    ...(page.next ? { continue: encodeContinue(page.next, "functions") } : {}),
    instancesKnown: inst.known,
  };
}

/** One function's summary (the console's function view), or undefined when it does not exist. */
export async function consoleFunctionSummary(
  store: Store,
  namespace: string,
  name: string,
  pageBytes: number,
  instances: () => Promise<InstancesView>,
): Promise<{ item: FunctionSummary; instancesKnown: boolean } | undefined> {
  const [fn, inst] = await Promise.all([store.get("functions", namespace, name), instances()]);
  if (!fn) return undefined;
  const [item] = await summarize(store, [fn], inst, pageBytes, ROW_ITEMS.one);
  return item && { item, instancesKnown: inst.known };
}

/** One kind's triggers of a page's functions: the first of each function, and its count. */
interface Found {
  items: AnyObject[];
  /** Per `ns/name` of a function, how many triggers of the kind name it. */
  counts: Map<string, number>;
}

const key = (ns: string, name: string) => `${ns}/${name}`;

async function summarize(
  store: Store,
  functions: readonly FunctionObject[],
  instances: InstancesView,
  pageBytes: number,
  perRow: number,
): Promise<FunctionSummary[]> {
  const items = functions.map((f): FunctionSummary => ({
    namespace: f.metadata.namespace,
    name: f.metadata.name,
    revision: f.metadata.revision,
    environment: str(specOf(f).environment),
    routes: [],
    routesTotal: 0,
    routesMore: false,
    triggers: [],
    triggersTotal: 0,
    triggersMore: false,
    instances: { specialized: 0, current: 0 },
  }));
  const byKey = new Map(items.map((i) => [key(i.namespace, i.name), i]));
  const namespaces = [...new Set(items.map((i) => i.namespace))];
  const found =
    (await indexed(store, items, perRow, pageBytes)) ??
    (await scanned(store, namespaces, byKey, pageBytes, perRow));
  const of = (t: AnyObject) => byKey.get(key(t.metadata.namespace, str(specOf(t).function)));
  JOINED_KINDS.forEach((kind, i) => {
    const { items: triggers = [], counts = new Map<string, number>() } = found[i] ?? {};
    for (const [k, n] of counts) {
      const item = byKey.get(k);
      if (!item) continue;
      if (kind === "httptriggers") item.routesTotal += n;
      else item.triggersTotal += n;
    }
    for (const t of triggers) {
      const item = of(t);
      if (!item) continue;
      if (kind === "httptriggers") {
        if (item.routes.length < perRow)
          item.routes.push({
            trigger: t.metadata.name,
            ...pick(specOf(t), ["path", "prefix", "methods", "host"]),
          });
      } else if (item.triggers.length < perRow)
        item.triggers.push({
          kind,
          name: t.metadata.name,
          ...pick(specOf(t), ["subject", "stream", "cron", "namespace", "resource"]),
        });
    }
  });
  for (const item of items) {
    // A set read after its count may have grown meanwhile: a row never counts fewer than it shows.
    item.routesTotal = Math.max(item.routesTotal, item.routes.length);
    item.triggersTotal = Math.max(item.triggersTotal, item.triggers.length);
    item.routesMore = item.routesTotal > item.routes.length;
    item.triggersMore = item.triggersTotal > item.triggers.length;
  }
  for (const inst of instances.list) {
    const f = inst.function;
    const item = f ? byKey.get(key(f.namespace, f.name)) : undefined;
    if (!item || !f) continue;
    item.instances.specialized++;
    if (f.revision === item.revision) item.instances.current++;
  }
  return items;
}

/**
 * Per kind of JOINED_KINDS, the page's functions' first `perRow` triggers each (by name) and their
 * counts, by the function index; undefined while the index is not built. The triggers' texts are
 * read within `pageBytes` (a trigger can be megabytes: its labels); past it a row shows fewer.
 */
async function indexed(
  store: Store,
  items: readonly FunctionSummary[],
  perRow: number,
  pageBytes: number,
): Promise<Found[] | undefined> {
  const byKind = await store.functionTriggers(items, perRow, pageBytes);
  if (!byKind) return undefined;
  return JOINED_KINDS.map((kind): Found => {
    const got = byKind.get(kind);
    const counts = new Map<string, number>();
    items.forEach((f, i) => counts.set(key(f.namespace, f.name), got?.counts[i] ?? 0));
    return {
      items: (got?.items ?? []).map(({ bytes }) => JSON.parse(bytes.toString("utf8")) as AnyObject),
      counts,
    };
  });
}

/**
 * Per kind of JOINED_KINDS, per namespace of the page, the first `perRow` triggers of each of the
 * page's functions and their counts; in kind order, then name order, as the unpaged listing joined
 * them. A few scans at a time: all at once held a trigger page per kind and namespace in memory
 * together (a page of 1000 functions in 1000 namespaces: 4,000 pages of up to 1000 triggers each).
 */
async function scanned(
  store: Store,
  namespaces: readonly string[],
  byKey: ReadonlyMap<string, unknown>,
  pageBytes: number,
  perRow: number,
): Promise<Found[]> {
  const scans = JOINED_KINDS.flatMap((kind) => namespaces.map((ns) => ({ kind, ns })));
  const kept: Budget = { left: pageBytes, taken: 0 };
  const results = await inTurns(scans, TRIGGER_SCANS_AT_ONCE, ({ kind, ns }) =>
    triggersOf(store, kind, ns, byKey, pageBytes, perRow, kept),
  );
  return JOINED_KINDS.map((_, k): Found => {
    const mine = results.slice(k * namespaces.length, (k + 1) * namespaces.length);
    return {
      items: mine.flatMap((r) => r.items),
      counts: new Map(mine.flatMap((r) => [...r.counts])),
    };
  });
}

/** Bytes the triggers a page's scans keep may still take (their texts), shared by the scans. */
interface Budget {
  left: number;
  taken: number;
}

/**
 * The triggers of `kind` in namespace `ns` whose function is one of `wanted` (keyed `ns/name`),
 * read a page at a time (LIST_MAX_LIMIT objects, at most `pageBytes` each): only the first
 * `perRow` matches of each function are kept, while `kept` holds their bytes (the first always),
 * the rest counted, so a namespace of many triggers (or a function of many, or of large ones)
 * costs reads, never its whole listing in memory at once.
 */
async function triggersOf(
  store: Store,
  kind: KindPlural,
  ns: string,
  wanted: ReadonlyMap<string, unknown>,
  pageBytes: number,
  perRow: number,
  kept: Budget,
): Promise<Found> {
  const out: Found = { items: [], counts: new Map() };
  let after: PageCursor | undefined;
  do {
    const page = await store.pageJson(kind, {
      namespace: ns,
      limit: LIST_MAX_LIMIT,
      after,
      maxBytes: pageBytes,
    });
    for (const raw of page.items) {
      const t = JSON.parse(raw.toString("utf8")) as AnyObject;
      const k = key(ns, str(specOf(t).function));
      if (!wanted.has(k)) continue;
      const n = (out.counts.get(k) ?? 0) + 1;
      out.counts.set(k, n);
      if (n <= perRow && (kept.taken === 0 || raw.length <= kept.left)) {
        out.items.push(t);
        kept.left -= raw.length;
        kept.taken++;
      }
    }
    after = page.next;
  } while (after);
  return out;
}

function specOf(o: AnyObject): Record<string, unknown> {
  return o.spec;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function pick(spec: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (spec[k] !== undefined) out[k] = spec[k];
  return out;
}
