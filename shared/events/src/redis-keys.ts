import type { KindPlural } from "./objects";

export const DEFAULT_REDIS_PREFIX = "fizz:v1:";

/**
 * Every Redis key, under one prefix. The registry owns objects, indexes and code blobs; the
 * scheduler owns the route cache and leader locks; the poolkeeper only reads code blobs by digest.
 */
export function redisKeys(prefix: string = DEFAULT_REDIS_PREFIX) {
  return {
    /** One registry object, JSON. */
    obj: (kind: KindPlural, ns: string, name: string) => `${prefix}obj:${kind}:${ns}:${name}`,
    /** Names of a kind in one namespace (set). */
    nsIndex: (kind: KindPlural, ns: string) => `${prefix}idx:${kind}:${ns}`,
    /** `ns/name` of a kind across namespaces (set). */
    kindIndex: (kind: KindPlural) => `${prefix}idx:${kind}`,
    /** Code bytes, content-addressed and immutable; takes the hex digest or `sha256:<hex>`. */
    code: (digest: string) => `${prefix}code:${digest.replace(/^sha256:/, "")}`,
    /**
     * A secret's values, sealed (AES-256-GCM, JSON `{v, iv, tag, ct}`), written in the same
     * transaction as the Secret object, which holds only the key names. Only the registry reads it.
     */
    secretData: (ns: string, name: string) => `${prefix}secretdata:${ns}:${name}`,
    /** The route cache: instance id -> JSON Instance, per function (hash). */
    routes: (ns: string, name: string) => `${prefix}routes:${ns}:${name}`,
    /** `ns/name` of functions that have a routes hash (set). */
    routesIndex: `${prefix}routes:index`,
    /** The last tick a timer fired (ISO string), so a new leader knows where the last one stopped. */
    timerLast: (ns: string, name: string) => `${prefix}timers:last:${ns}:${name}`,
    /** A leader lock, e.g. for timers (string with expiry). */
    lock: (name: string) => `${prefix}lock:${name}`,
    /**
     * `ns/name` of the HTTP triggers of one route shape (`<host>|<path|prefix>|<match>`, host as
     * the gateway matches it), kept with every trigger write: the registry's conflict check reads
     * only these (set).
     */
    routeIndex: (shape: string) => `${prefix}routeidx:${shape}`,
    /** Set once the route index holds every trigger (v2: hosts without their port). */
    routeIndexBuilt: `${prefix}routeidx:built:v2`,
    /**
     * Names of the `kind` triggers in `ns` whose spec.function is `fn`, kept with every trigger
     * write (set; the registry's function-index.ts). Names are DNS labels: no ':' to collide.
     */
    fnIndex: (kind: KindPlural, ns: string, fn: string) => `${prefix}fnidx:${kind}:${ns}:${fn}`,
    /** Set once the function index holds every trigger stored before it existed. */
    fnIndexBuilt: `${prefix}fnidx:built:v1`,
    /**
     * Every object of a kind as `<namespace>NUL<name>`, all scores 0 (sorted set): a list page is
     * one ZRANGEBYLEX from its cursor. Kept with every object write.
     */
    listIndex: (kind: KindPlural) => `${prefix}lidx:${kind}`,
    /** Set once the list index holds every object stored before it existed. */
    listIndexBuilt: `${prefix}lidx:built:v1`,
  };
}
export type RedisKeys = ReturnType<typeof redisKeys>;
