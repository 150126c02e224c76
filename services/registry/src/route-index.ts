import { redisKeys, type HttpTrigger, type HttpTriggerSpec } from "@fizz/events";
import { routeKey } from "./route-conflict";

/**
 * The route index: which HTTP triggers claim one route shape, so a trigger write checks its route
 * against the few triggers of the same shape instead of reading (and watching) every trigger of
 * every namespace — that made each write O(all triggers), about 26 creates/s at 2,000 routes.
 *
 * Keys (under the store's prefix):
 *   routeidx:<host>|<path|prefix>|<shape>   set of `ns/name` of triggers with that shape (any methods);
 *                                           <host> as the gateway matches it (`routeHost`: lower
 *                                           case, no port)
 *   routeidx:built:v2                       set once every trigger stored before the index existed
 *                                           was added (buildRouteIndex, at start-up)
 *
 * v2: the first index (marker `routeidx:built`) kept a host's port, so `a.example:8080` had a set
 * of its own and never met `a.example`. A v2 registry finds no v2 marker in such a Redis, checks
 * against every trigger until it has rebuilt the index under the port-less keys, then sets the v2
 * marker. Sets left under old port-bearing keys are no longer read (a few stale keys, harmless).
 *
 * A member is only a candidate: the check reads the trigger itself and compares its real route, so
 * a stale member (a trigger changed by a registry that predates the index) is harmless. A missing
 * member would not be, so until `built` is set the check reads every trigger as before.
 */
export function routeShape(spec: Pick<HttpTriggerSpec, "path" | "prefix" | "host">): string {
  const k = routeKey({ ...spec, methods: [] });
  return `${k.host}|${k.match}|${k.key}`;
}

export function routeIndexKey(prefix: string, shape: string): string {
  return redisKeys(prefix).routeIndex(shape);
}

export function routeIndexBuiltKey(prefix: string): string {
  return redisKeys(prefix).routeIndexBuilt;
}

export function memberOf(t: HttpTrigger): string {
  return `${t.metadata.namespace}/${t.metadata.name}`;
}

/** The index edits one trigger write makes: its old shape left (if it changed), its new one joined. */
export function routeIndexEdits(
  before: HttpTrigger | undefined,
  after: HttpTrigger | undefined,
): { add?: string; remove?: string } {
  const was = before && routeShape(before.spec);
  const now = after && routeShape(after.spec);
  if (was === now) return now === undefined ? {} : { add: now };
  return {
    ...(now !== undefined ? { add: now } : {}),
    ...(was !== undefined ? { remove: was } : {}),
  };
}
