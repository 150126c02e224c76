import {
  DEFAULT_CONCURRENCY,
  FizzError,
  runtimeOfImage,
  type Environment,
  type FunctionObject,
  type ObjectsByPlural,
  type SkippedObject,
} from "@fizz/events";
import { ListingWindow, type Named } from "@fizz/kit";
import { functionKey, type Tracked } from "./instance-table";

/**
 * What the scheduler asks the registry one object at a time (registry.get over NATS in
 * production). Whole listings arrive through `listed` (kit's followRegistryListing in production).
 */
export interface RegistryClient {
  get<K extends "functions" | "environments">(
    kind: K,
    namespace: string,
    name: string,
  ): Promise<ObjectsByPlural[K]>;
}

export interface Resolved {
  fn: FunctionObject;
  env: Environment;
}

type Versioned = FunctionObject | Environment;
export type CatalogKind = "functions" | "environments";

/** What applying a registry.list answer changed. */
export interface Listed<K extends CatalogKind> {
  /** True once both kinds were listed (see `Catalog.loaded`). */
  loaded: boolean;
  /** Cached objects the listing no longer holds, now removed (deleted while events were lost). */
  removed: Array<ObjectsByPlural[K]>;
  /**
   * Cached objects the listing replaced with another incarnation (another uid: deleted and created
   * again) or another revision (updated) while events were lost.
   */
  replaced: Array<{ old: ObjectsByPlural[K]; new: ObjectsByPlural[K] }>;
}

/**
 * Functions and environments, filled from registry.list at start and after every NATS reconnect,
 * and kept by registry.changed events; a miss asks registry.get once and caches the answer. Events
 * can arrive out of order with a list or a get answer, so a write only wins when it is not older
 * than what is cached: same uid (same incarnation) and a revision at least as high, or another uid
 * (deleted and created again).
 *
 * A listing and the writes made while it is on its way can cross, and "another uid wins" cannot
 * tell an old incarnation in the listing from a new one an event brought. So they merge through
 * kit's `ListingWindow`, one per kind: `beginListing` opens it, every write in it (an event, a
 * registry.get answer) touches its key, and the listing leaves touched keys alone: it neither
 * overwrites them nor removes them. Untouched keys the listing lacks were deleted while events
 * were lost, and are removed.
 */
export class Catalog {
  private readonly fns = new Map<string, FunctionObject>();
  private readonly envs = new Map<string, Environment>();
  /** True once both kinds were listed: only then does "not cached" mean "does not exist". */
  loaded = false;
  private readonly listedKinds = new Set<CatalogKind>();
  /** Per kind: the writes made since the listing in flight was requested win over it. */
  private readonly windows: Record<CatalogKind, ListingWindow> = {
    functions: new ListingWindow(),
    environments: new ListingWindow(),
  };

  constructor(private readonly registry: RegistryClient) {}

  fn(namespace: string, name: string): FunctionObject | undefined {
    return this.fns.get(functionKey(namespace, name));
  }

  env(namespace: string, name: string): Environment | undefined {
    return this.envs.get(functionKey(namespace, name));
  }

  functions(): Iterable<FunctionObject> {
    return this.fns.values();
  }

  /** The registry's current object, bypassing the cache (the caller decides what to apply). */
  fetchFunction(namespace: string, name: string): Promise<FunctionObject> {
    return this.registry.get("functions", namespace, name);
  }

  /** From memory when cached (the lease hot path); otherwise one registry.get per missing object. */
  resolveCached(namespace: string, name: string): Resolved | undefined {
    const fn = this.fn(namespace, name);
    const env = fn && this.env(namespace, fn.spec.environment);
    return fn && env ? { fn, env } : undefined;
  }

  async resolve(namespace: string, name: string): Promise<Resolved> {
    let fn = this.fn(namespace, name);
    if (!fn) {
      fn = await this.registry.get("functions", namespace, name);
      this.putFunction(fn);
      fn = this.fn(namespace, name) ?? fn;
    }
    let env = this.env(namespace, fn.spec.environment);
    if (!env) {
      try {
        env = await this.registry.get("environments", namespace, fn.spec.environment);
      } catch (err) {
        const fe = FizzError.from(err);
        if (fe.code !== "NOT_FOUND") throw fe;
        throw new FizzError(
          "UNKNOWN_ENVIRONMENT",
          `function ${namespace}/${name} names environment "${fn.spec.environment}", which does not exist`,
          { field: "spec.environment" },
        );
      }
      this.putEnvironment(env);
    }
    return { fn, env };
  }

  /** Call before sending registry.list for `kind`; pass the answer to `listed`. */
  beginListing(kind: CatalogKind): void {
    this.windows[kind].begin();
  }

  /** A listing that failed: events are again the only news. */
  abortListing(kind: CatalogKind): void {
    this.windows[kind].abort();
  }

  /**
   * The registry's full list of one kind (requested after `beginListing`): adds and updates what
   * it holds and removes what it no longer does, except keys written since the listing was
   * requested (they are newer than it). Objects still go through the revision check, so a listing
   * older than an event applied before the window does not undo it either. The caller retires
   * what hangs off the removed objects, as for a delete event, and what the replaced ones
   * superseded, as for an update or a create event. Objects the registry `skipped` (could not
   * read) are not removed.
   */
  listed<K extends CatalogKind>(
    kind: K,
    items: ReadonlyArray<ObjectsByPlural[K]>,
    skipped: SkippedObject[] = [],
  ): Listed<K> {
    const map: Map<string, Versioned> = kind === "functions" ? this.fns : this.envs;
    const want = kind === "functions" ? "Function" : "Environment";
    const objs: ReadonlyArray<Versioned> = items;
    // The registry answers the asked kind; checking the kind keeps the maps honest anyway.
    const { apply, remove } = this.windows[kind].merge(
      objs.filter((o) => o.kind === want),
      keyOf,
      map.keys(),
      skipped,
    );
    const replaced: Array<{ old: Versioned; new: Versioned }> = [];
    for (const o of apply) {
      const old = map.get(keyOf(o));
      if (put(map, o) && old && changed(old, o)) replaced.push({ old, new: o });
    }
    const removed: Versioned[] = [];
    for (const key of remove) {
      removed.push(map.get(key)!);
      map.delete(key);
    }
    this.listedKinds.add(kind);
    this.loaded = this.listedKinds.size === 2;
    // `removed` and `replaced` came out of the map of this kind.
    return {
      loaded: this.loaded,
      removed: removed as Array<ObjectsByPlural[K]>,
      replaced: replaced as Array<{ old: ObjectsByPlural[K]; new: ObjectsByPlural[K] }>,
    };
  }

  /** Returns true when the object replaced (or added to) the cache. */
  putFunction(obj: FunctionObject): boolean {
    this.touch("functions", obj);
    return put(this.fns, obj);
  }

  /** Returns false (and keeps the cache) only when a newer incarnation is cached. */
  removeFunction(obj: FunctionObject): boolean {
    this.touch("functions", obj);
    return remove(this.fns, obj);
  }

  putEnvironment(obj: Environment): boolean {
    this.touch("environments", obj);
    return put(this.envs, obj);
  }

  removeEnvironment(obj: Environment): boolean {
    this.touch("environments", obj);
    return remove(this.envs, obj);
  }

  /** Even a write that loses marks its key: what is cached is then at least as new as it. */
  private touch(kind: CatalogKind, obj: Versioned): void {
    this.windows[kind].touch(keyOf(obj));
  }
}

const keyOf = (obj: Named) => functionKey(obj.metadata.namespace, obj.metadata.name);

function put<T extends Versioned>(map: Map<string, T>, obj: T): boolean {
  const key = keyOf(obj);
  const cur = map.get(key);
  if (cur && cur.metadata.uid === obj.metadata.uid && cur.metadata.revision > obj.metadata.revision)
    return false;
  map.set(key, obj);
  return true;
}

/** Another incarnation or another revision (a listing repeats most objects unchanged). */
function changed(old: Versioned, obj: Versioned): boolean {
  return old.metadata.uid !== obj.metadata.uid || old.metadata.revision !== obj.metadata.revision;
}

function remove<T extends Versioned>(map: Map<string, T>, obj: T): boolean {
  const key = keyOf(obj);
  const cur = map.get(key);
  // A delete of an older incarnation must not remove the one created since.
  if (cur && cur.metadata.uid !== obj.metadata.uid) return false;
  map.delete(key);
  return true;
}

/** Function's concurrency, else its environment's, else the runtime's default. */
export function effectiveConcurrency(fn: FunctionObject, env: Environment): number {
  return (
    fn.spec.concurrency ??
    env.spec.concurrency ??
    DEFAULT_CONCURRENCY[runtimeOfImage(env.spec.image) ?? "other"]
  );
}

/** An instance's concurrency: what it was started with, else what its function resolves to now. */
export function instanceConcurrency(t: Tracked, r: Resolved): number {
  return t.instance.concurrency ?? effectiveConcurrency(r.fn, r.env);
}

export function timeoutMsOf(fn: FunctionObject): number {
  return Math.max(1, Math.round(fn.spec.timeoutSeconds * 1000));
}
