/**
 * The route table, compiled once per registry change and matched on every request, so matching
 * allocates next to nothing: exact paths are one Map lookup, `/function/<name>` one more, and only
 * requests that miss both look at parameter and prefix routes.
 *
 * Precedence: `/function/<name>[.<ns>]` of an existing function (a reserved path space, so a
 * catch-all prefix trigger cannot hide the function routes) > exact path > `{param}` path >
 * prefix (longest wins). Within one kind, a trigger naming a host beats one that does not.
 */

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
  private readonly prefixes: PrefixCompiled<T>[] = [];
  private readonly functions = new Map<string, T>();
  /** Skip reading the Host header when no trigger names a host. */
  readonly usesHost: boolean;
  readonly size: number;

  constructor(triggers: readonly TriggerRule<T>[], functions: readonly FunctionRule<T>[]) {
    let usesHost = false;
    for (const t of triggers) {
      const host = t.host ? stripPort(t.host.toLowerCase()) : undefined;
      if (host) usesHost = true;
      const base: Compiled<T> = {
        id: t.id,
        target: t.target,
        host,
        methods: t.methods.length > 0 ? new Set(t.methods.map((m) => m.toUpperCase())) : undefined,
      };
      if (t.prefix !== undefined) {
        const prefix =
          t.prefix.length > 1 && t.prefix.endsWith("/") ? t.prefix.slice(0, -1) : t.prefix;
        this.prefixes.push({ ...base, prefix, under: prefix === "/" ? "/" : `${prefix}/` });
      } else if (t.path !== undefined) {
        const segments = t.path.split("/");
        if (segments.some(isParam)) {
          const compiled: ParamCompiled<T> = {
            ...base,
            literals: segments.map((s) => (isParam(s) ? null : s)),
            // A name that cannot be a header name still matches; its value is just not sent.
            names: segments.map((s) =>
              isParam(s) && HEADER_TOKEN.test(s.slice(1, -1)) ? s.slice(1, -1) : null,
            ),
          };
          pushTo(this.params, segments.length, compiled);
        } else {
          pushTo(this.exact, t.path, base);
        }
      }
    }
    for (const list of this.exact.values()) list.sort(hostFirst);
    for (const list of this.params.values()) list.sort(byParamSpecificity);
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length || hostFirst(a, b));
    for (const f of functions) {
      this.functions.set(`${f.name}.${f.namespace}`, f.target);
      if (f.namespace === DEFAULT_NAMESPACE) this.functions.set(f.name, f.target);
    }
    this.usesHost = usesHost;
    this.size = triggers.length + functions.length;
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
    const h = this.usesHost && host ? stripPort(host.toLowerCase()) : undefined;

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
    for (const c of this.prefixes) {
      if ((path === c.prefix || path.startsWith(c.under)) && allowed(c, method, h)) {
        return { target: c.target, url, params: undefined, trigger: c.id };
      }
    }
    return undefined;
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

function isParam(segment: string): boolean {
  return segment.length > 2 && segment.startsWith("{") && segment.endsWith("}");
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function hostFirst(a: { host: string | undefined }, b: { host: string | undefined }): number {
  return (a.host ? 0 : 1) - (b.host ? 0 : 1);
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

function pick<T>(
  list: Compiled<T>[],
  method: string,
  host: string | undefined,
): Compiled<T> | undefined {
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

/** `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`. */
export function stripPort(host: string): string {
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    return close < 0 ? host : host.slice(0, close + 1);
  }
  const colon = host.indexOf(":");
  return colon < 0 ? host : host.slice(0, colon);
}
