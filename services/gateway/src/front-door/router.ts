/**
 * The route table, compiled once per registry change and matched on every request, so matching
 * allocates next to nothing: exact paths are one Map lookup, `/function/<name>` one more, and only
 * requests that miss both look at parameter and prefix routes.
 *
 * Precedence: `/function/<name>[.<ns>]` of an existing function (a reserved path space, so a
 * catch-all prefix trigger cannot hide the function routes) > exact path > `{param}` path >
 * prefix (longest wins). Within one kind, a trigger naming a host beats one that does not.
 */
import { routeHost, stripPort } from "@fizz/events";

export { stripPort };

export interface TriggerRule<T> {
  /** `<ns>/<name>` of the trigger, for diagnostics. */
  id: string;
  target: T;
  /** Lower-case host, compared without port; undefined = any host. */
  host?: string | undefined;
  /** Upper-case methods; empty = any. */
  methods: readonly string[];
  path?: string | undefined;
  prefix?: string | undefined;
}

export interface FunctionRule<T> {
  namespace: string;
  name: string;
  target: T;
}

export interface RouteMatch<T> {
  target: T;
  /** What the function sees as path and query. */
  url: string;
  /** Route parameters as a flat [name, value, name, value] list, or undefined. */
  params: string[] | undefined;
  /** Trigger id, or undefined for a /function/ route. */
  trigger: string | undefined;
}

interface Compiled<T> {
  id: string;
  target: T;
  host: string | undefined;
  methods: ReadonlySet<string> | undefined;
  /** When the trigger was first set: ties keep this order, as the gateway's map does. */
  order: number;
}
interface ParamCompiled<T> extends Compiled<T> {
  /** Per segment: a literal to compare, or null for a parameter. */
  literals: (string | null)[];
  names: (string | null)[];
}
interface PrefixCompiled<T> extends Compiled<T> {
  prefix: string;
  /** The prefix with a trailing '/', so `/api` matches `/api/x` but not `/apix`. */
  under: string;
}

const FUNCTION_ROOT = "/function/";
const HEADER_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
export const DEFAULT_NAMESPACE = "default";

export class Router<T> {
  private readonly exact = new Map<string, Compiled<T>[]>();
  private readonly params = new Map<number, ParamCompiled<T>[]>();
  /** Prefix → its routes; a request looks up its own path's ancestors, longest first. */
  private readonly prefixes = new Map<string, PrefixCompiled<T>[]>();
  private readonly functions = new Map<string, T>();
  /**
   * Trigger id → where its compiled route sits, so a change touches only that route. Its `order`
   * (when the id was first set) is kept while it is replaced: routes that tie (the registry
   * refuses them, but triggers stored before it compared hosts by `routeHost` may tie, e.g.
   * `a.example` and `a.example:8080`, one host here) keep the order a table compiled from the
   * gateway's map would give them, where an update keeps its place. So updating one of them does
   * not hand its requests to the other.
   */
  private readonly byId = new Map<string, Placed<T>>();
  private nextOrder = 0;
  private hostRoutes = 0;
  private functionCount = 0;
  /** Skip reading the Host header when no trigger names a host. */
  usesHost = false;

  constructor(triggers: readonly TriggerRule<T>[], functions: readonly FunctionRule<T>[]) {
    for (const t of triggers) this.setTrigger(t);
    for (const f of functions) this.setFunction(f);
  }

  get size(): number {
    return this.byId.size + this.functionCount;
  }

  /**
   * Adds a trigger's route, replacing the one with the same id: one registry change costs one
   * route, not a recompiled table (which made each write O(all routes) at 10,000 functions).
   * Lists stay in match order: a new route goes after the ones it ties with, as a stable sort of
   * the whole table would put it. Returns the target the id's route had (undefined: none).
   */
  setTrigger(t: TriggerRule<T>): T | undefined {
    const was = this.byId.get(t.id);
    const order = was?.c.order ?? this.nextOrder++;
    this.removeTrigger(t.id);
    const host = t.host ? routeHost(t.host) : undefined;
    const base: Compiled<T> = {
      id: t.id,
      target: t.target,
      host,
      methods: t.methods.length > 0 ? new Set(t.methods.map((m) => m.toUpperCase())) : undefined,
      order,
    };
    let placed: Placed<T> | undefined;
    if (t.prefix !== undefined) {
      const prefix =
        t.prefix.length > 1 && t.prefix.endsWith("/") ? t.prefix.slice(0, -1) : t.prefix;
      const c: PrefixCompiled<T> = { ...base, prefix, under: prefix === "/" ? "/" : `${prefix}/` };
      placed = {
        list: insertSorted(this.prefixes, prefix, c, hostFirst),
        c,
        in: "prefixes",
        key: prefix,
      };
    } else if (t.path !== undefined) {
      const path = t.path;
      const segments = path.split("/");
      if (segments.some(isParam)) {
        const c: ParamCompiled<T> = {
          ...base,
          literals: segments.map((seg) => (isParam(seg) ? null : seg)),
          // A name that cannot be a header name still matches; its value is just not sent.
          names: segments.map((seg) =>
            isParam(seg) && HEADER_TOKEN.test(seg.slice(1, -1)) ? seg.slice(1, -1) : null,
          ),
        };
        const n = segments.length;
        placed = {
          list: insertSorted(this.params, n, c, byParamSpecificity),
          c,
          in: "params",
          key: n,
        };
      } else {
        placed = {
          list: insertSorted(this.exact, path, base, hostFirst),
          c: base,
          in: "exact",
          key: path,
        };
      }
    }
    if (!placed) return was?.c.target;
    this.byId.set(t.id, placed);
    if (host) this.hostRoutes++;
    this.usesHost = this.hostRoutes > 0;
    return was?.c.target;
  }

  /** Returns the target the route had (undefined: there was none). */
  removeTrigger(id: string): T | undefined {
    const placed = this.byId.get(id);
    if (!placed) return undefined;
    this.byId.delete(id);
    const i = placed.list.indexOf(placed.c);
    if (i >= 0) placed.list.splice(i, 1);
    if (placed.list.length === 0)
      (this[placed.in] as Map<string | number, unknown>).delete(placed.key);
    if (placed.c.host) this.hostRoutes--;
    this.usesHost = this.hostRoutes > 0;
    return placed.c.target;
  }

  /**
   * `/function/<name>.<ns>` (and `/function/<name>` in the default namespace). Returns the
   * target the route had (undefined: none).
   */
  setFunction(f: FunctionRule<T>): T | undefined {
    const key = `${f.name}.${f.namespace}`;
    const was = this.functions.get(key);
    if (!this.functions.has(key)) this.functionCount++;
    this.functions.set(key, f.target);
    if (f.namespace === DEFAULT_NAMESPACE) this.functions.set(f.name, f.target);
    return was;
  }

  /** Returns the target the route had (undefined: there was none). */
  removeFunction(namespace: string, name: string): T | undefined {
    const key = `${name}.${namespace}`;
    const was = this.functions.get(key);
    if (!this.functions.delete(key)) return undefined;
    this.functionCount--;
    if (namespace === DEFAULT_NAMESPACE) this.functions.delete(name);
    return was;
  }

  /**
   * `url` is the request target as received (path and query); `host` the Host header (any case,
   * port allowed), only read when `usesHost`.
   */
  match(method: string, host: string | undefined, url: string): RouteMatch<T> | undefined {
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);

    if (path.startsWith(FUNCTION_ROOT)) {
      const m = this.matchFunction(url);
      if (m) return m;
    }
    const h = this.usesHost && host ? routeHost(host) : undefined;

    const exact = this.exact.get(path);
    if (exact) {
      const c = pick(exact, method, h);
      if (c) return { target: c.target, url, params: undefined, trigger: c.id };
    }
    if (this.params.size > 0) {
      const segments = path.split("/");
      const list = this.params.get(segments.length);
      if (list) {
        for (const c of list) {
          if (!allowed(c, method, h)) continue;
          const params = matchSegments(c, segments);
          if (params) return { target: c.target, url, params, trigger: c.id };
        }
      }
    }
    if (this.prefixes.size > 0) {
      const c = this.matchPrefix(path, method, h);
      if (c) return { target: c.target, url, params: undefined, trigger: c.id };
    }
    return undefined;
  }

  /**
   * The longest prefix route that holds the path: the path itself, then each ancestor ending
   * before a `/` (`/a/b/c` → `/a/b`, `/a`), then `/`. A few map lookups per request, however
   * many prefix routes there are.
   */
  private matchPrefix(
    path: string,
    method: string,
    h: string | undefined,
  ): PrefixCompiled<T> | undefined {
    if (path.charCodeAt(0) !== 47 /* / */) return undefined;
    const own = this.prefixes.get(path);
    const c = own && pick(own, method, h);
    if (c) return c;
    for (let i = path.lastIndexOf("/", path.length - 1); i > 0; i = path.lastIndexOf("/", i - 1)) {
      const list = this.prefixes.get(path.slice(0, i));
      const found = list && pick(list, method, h);
      if (found) return found;
    }
    const root = path === "/" ? undefined : this.prefixes.get("/");
    return root && pick(root, method, h);
  }

  /** `/function/<name>[.<ns>]<rest>`: the function sees `<rest>` (at least `/`), query kept. */
  private matchFunction(url: string): RouteMatch<T> | undefined {
    let end = FUNCTION_ROOT.length;
    while (end < url.length) {
      const ch = url.charCodeAt(end);
      if (ch === 47 /* / */ || ch === 63 /* ? */) break;
      end++;
    }
    const target = this.functions.get(url.slice(FUNCTION_ROOT.length, end));
    if (target === undefined) return undefined;
    const rest = url.slice(end);
    return {
      target,
      url: rest.length === 0 || rest.charCodeAt(0) === 63 ? `/${rest}` : rest,
      params: undefined,
      trigger: undefined,
    };
  }
}

/**
 * Where one trigger's compiled route is: its list, and the map and key to drop the list from once
 * empty. Plain fields, not a closure: one per trigger, a closure and its contexts were ~400 bytes.
 */
interface Placed<T> {
  list: Compiled<T>[];
  c: Compiled<T>;
  in: "exact" | "params" | "prefixes";
  key: string | number;
}

/** Inserts after every element that sorts before or ties with `value` (a stable sort's place). */
function insertSorted<K, V>(map: Map<K, V[]>, key: K, value: V, cmp: (a: V, b: V) => number): V[] {
  let list = map.get(key);
  if (!list) {
    // Most lists hold one route for good: sized for one, not grown by splice (17 slots).
    list = [value];
    map.set(key, list);
    return list;
  }
  let i = list.length;
  while (i > 0 && cmp(list[i - 1]!, value) > 0) i--;
  list.splice(i, 0, value);
  return list;
}

function isParam(segment: string): boolean {
  return segment.length > 2 && segment.startsWith("{") && segment.endsWith("}");
}

function hostFirst(
  a: { host: string | undefined; order: number },
  b: { host: string | undefined; order: number },
): number {
  return (a.host ? 0 : 1) - (b.host ? 0 : 1) || a.order - b.order;
}

/** A literal segment beats a parameter at the first position where two routes differ. */
function byParamSpecificity<T>(a: ParamCompiled<T>, b: ParamCompiled<T>): number {
  for (let i = 0; i < a.literals.length; i++) {
    const la = a.literals[i] !== null;
    const lb = b.literals[i] !== null;
    if (la !== lb) return la ? -1 : 1;
  }
  return hostFirst(a, b);
}

function allowed<T>(c: Compiled<T>, method: string, host: string | undefined): boolean {
  return (
    (c.methods === undefined || c.methods.has(method)) && (c.host === undefined || c.host === host)
  );
}

function pick<T, C extends Compiled<T>>(
  list: C[],
  method: string,
  host: string | undefined,
): C | undefined {
  for (const c of list) if (allowed(c, method, host)) return c;
  return undefined;
}

function matchSegments<T>(c: ParamCompiled<T>, segments: string[]): string[] | undefined {
  let params: string[] | undefined;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i] as string;
    const literal = c.literals[i];
    if (literal === null) {
      if (seg.length === 0) return undefined;
      const name = c.names[i];
      if (name) (params ??= []).push(name, decodeParam(seg));
    } else if (literal !== seg) {
      return undefined;
    }
  }
  return params;
}

/**
 * Parameter values travel as header values: decoded when the result is header-safe (no control
 * characters, nothing beyond Latin-1), otherwise passed as received (percent-encoded), so a
 * crafted `%0d%0a` can never split a header.
 */
export function decodeParam(raw: string): string {
  if (!raw.includes("%")) return raw;
  try {
    const decoded = decodeURIComponent(raw);
    return /^[\t\x20-\x7e\x80-\xff]*$/.test(decoded) ? decoded : raw;
  } catch {
    return raw;
  }
}
