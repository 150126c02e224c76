import {
  DEFAULT_CONCURRENCY,
  FizzError,
  runtimeOfImage,
  type Environment,
  type FunctionObject,
  type ObjectsByPlural,
} from "@fizz/events";
import { functionKey } from "./instance-table";

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

/**
 * Functions and environments, filled from registry.list at start and kept by registry.changed
 * events; a miss asks registry.get once and caches the answer. Events can arrive out of order with
 * a list or a get answer, so a write only wins when it is not older than what is cached: same uid
 * (same incarnation) and a revision at least as high, or another uid (deleted and created again).
 */
export class Catalog {
  private readonly fns = new Map<string, FunctionObject>();
  private readonly envs = new Map<string, Environment>();
  /** True once both kinds were listed: only then does "not cached" mean "does not exist". */
  loaded = false;
  private readonly listedKinds = new Set<CatalogKind>();

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

  /**
   * A registry.list answer for one kind. Objects go through the same revision check as events,
   * so a listing older than an event already applied does not undo it. Returns `loaded`.
   */
  listed<K extends CatalogKind>(kind: K, items: ReadonlyArray<ObjectsByPlural[K]>): boolean {
    const objs: ReadonlyArray<Versioned> = items;
    for (const o of objs) {
      // The registry answers the asked kind; checking the kind keeps the maps honest anyway.
      if (kind === "environments" && o.kind === "Environment") this.putEnvironment(o);
      else if (kind === "functions" && o.kind === "Function") this.putFunction(o);
    }
    this.listedKinds.add(kind);
    this.loaded = this.listedKinds.size === 2;
    return this.loaded;
  }

  /** Returns true when the object replaced (or added to) the cache. */
  putFunction(obj: FunctionObject): boolean {
    return put(this.fns, obj);
  }

  /** Returns false (and keeps the cache) only when a newer incarnation is cached. */
  removeFunction(obj: FunctionObject): boolean {
    return remove(this.fns, obj);
  }

  putEnvironment(obj: Environment): boolean {
    return put(this.envs, obj);
  }

  removeEnvironment(obj: Environment): boolean {
    return remove(this.envs, obj);
  }
}

function put<T extends Versioned>(map: Map<string, T>, obj: T): boolean {
  const key = functionKey(obj.metadata.namespace, obj.metadata.name);
  const cur = map.get(key);
  if (cur && cur.metadata.uid === obj.metadata.uid && cur.metadata.revision > obj.metadata.revision)
    return false;
  map.set(key, obj);
  return true;
}

function remove<T extends Versioned>(map: Map<string, T>, obj: T): boolean {
  const key = functionKey(obj.metadata.namespace, obj.metadata.name);
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

export function timeoutMsOf(fn: FunctionObject): number {
  return Math.max(1, Math.round(fn.spec.timeoutSeconds * 1000));
}
