import { routeHost, type HttpTrigger, type HttpTriggerSpec } from "@fizz/events";

/**
 * When two HTTP triggers would claim the same request. The gateway routes across namespaces (one
 * host/path space), so triggers in every namespace are compared, not just the writer's.
 *
 * Two triggers conflict when they have the same host (both none, or equal as the gateway matches
 * hosts: `routeHost`, letter case and port ignored), the same kind of match
 * with the same key — an exact path with the same shape (parameter names do not matter:
 * `/u/{id}` and `/u/{x}` match exactly the same requests) or the same prefix — and at least one
 * method in common (an empty method list means every method). An exact path and a prefix never
 * conflict: the exact path is the more specific route and wins.
 */
export interface RouteKey {
  host: string;
  match: "path" | "prefix";
  key: string;
  /** Upper-case methods; empty = all. */
  methods: readonly string[];
}

export function routeKey(
  spec: Pick<HttpTriggerSpec, "path" | "prefix" | "methods" | "host">,
): RouteKey {
  const host = routeHost(spec.host ?? "");
  const methods = (spec.methods ?? []).map((m) => m.toUpperCase());
  if (spec.path !== undefined) return { host, match: "path", key: pathShape(spec.path), methods };
  return { host, match: "prefix", key: normalizePrefix(spec.prefix ?? "/"), methods };
}

/** `/users/{id}/posts/{post}` → `/users/{}/posts/{}`. */
export function pathShape(path: string): string {
  return path.replace(/\{[^/{}]*\}/g, "{}");
}

/** `/api/` and `/api` claim the same requests under `/api/`, so they are one prefix. */
export function normalizePrefix(prefix: string): string {
  return prefix.length > 1 ? prefix.replace(/\/+$/, "") || "/" : prefix;
}

export function methodsOverlap(a: readonly string[], b: readonly string[]): boolean {
  if (a.length === 0 || b.length === 0) return true;
  return a.some((m) => b.includes(m));
}

export function routesConflict(a: RouteKey, b: RouteKey): boolean {
  return (
    a.host === b.host &&
    a.match === b.match &&
    a.key === b.key &&
    methodsOverlap(a.methods, b.methods)
  );
}

/** The first other trigger that conflicts with `candidate` (the candidate itself is skipped by identity). */
export function findRouteConflict(
  candidate: HttpTrigger,
  others: readonly HttpTrigger[],
): HttpTrigger | undefined {
  const mine = routeKey(candidate.spec);
  const self = identity(candidate);
  return others.find((o) => identity(o) !== self && routesConflict(mine, routeKey(o.spec)));
}

/** How a route reads in an error message: `GET,POST example.com/u/{id}` or `* /api/*`. */
export function describeRoute(spec: HttpTriggerSpec): string {
  const methods = spec.methods.length === 0 ? "*" : spec.methods.join(",");
  const where = spec.path ?? `${spec.prefix ?? "/"}*`;
  return `${methods} ${spec.host ?? ""}${where}`;
}

function identity(t: HttpTrigger): string {
  return `${t.metadata.namespace}/${t.metadata.name}`;
}
