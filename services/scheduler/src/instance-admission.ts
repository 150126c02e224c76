import {
  FizzError,
  type FunctionObject,
  type Instance,
  type SpecializeRequest,
} from "@fizz/events";
import type { Logger } from "@fizz/kit";
import { effectiveConcurrency, type Catalog, type Resolved } from "./catalog";
import type { PoolkeeperClient } from "./clients";
import { revisionKey, type InstanceTable, type Tracked } from "./instance-table";
import type { Retirer } from "./retirement";
import type { RouteStore } from "./route-cache";

/** The owner's side of a specialization: ask the poolkeeper, check the answer, admit the instance. */

export interface AdmissionDeps {
  catalog: Catalog;
  table: InstanceTable;
  poolkeeper: PoolkeeperClient;
  routes: RouteStore;
  retirer: Retirer;
  now: () => number;
}

/**
 * A broken function would otherwise take (and kill) one warm instance per retry until the pool
 * is empty; for a while every lease for that revision gets the same error without trying.
 */
export class LoadFailures {
  private readonly memo = new Map<string, { error: FizzError; until: number }>();

  constructor(private readonly ttlMs: number) {}

  /** Throws the remembered FUNCTION_LOAD_FAILED of this function revision, if any. */
  check(key: string, now: number): void {
    const m = this.memo.get(key);
    if (!m) return;
    if (m.until > now) throw m.error;
    this.memo.delete(key);
  }

  remember(key: string, error: FizzError, now: number): void {
    if (this.ttlMs <= 0 || error.code !== "FUNCTION_LOAD_FAILED") return;
    for (const [k, v] of this.memo) if (v.until <= now) this.memo.delete(k);
    this.memo.set(key, { error, until: now + this.ttlMs });
  }
}

/**
 * What the poolkeeper loads for a function revision: its single file, or its package's deployment.
 * A package without a successful build has no deployment; the registry refuses such a function, so
 * this only happens to an object written by hand, and it fails here with the reason, not later.
 */
export function specializeRequestOf(fn: FunctionObject, concurrency: number): SpecializeRequest {
  const { namespace, name, revision } = fn.metadata;
  const s = fn.spec;
  const common = {
    environment: { namespace, name: s.environment },
    function: { namespace, name, revision },
    concurrency,
    ...(s.entrypoint !== undefined ? { entrypoint: s.entrypoint } : {}),
    ...(s.env !== undefined ? { env: s.env } : {}),
    ...(s.secrets?.length ? { secrets: s.secrets } : {}),
    ...(s.configmaps?.length ? { configmaps: s.configmaps } : {}),
  };
  if (s.code) return { ...common, code: s.code };
  const deployment = s.package?.deployment;
  if (!deployment) {
    throw new FizzError(
      "PACKAGE_NOT_READY",
      `function "${namespace}/${name}": package "${s.package?.name ?? ""}" has no successful build yet`,
      { field: "spec.package", retryable: false },
    );
  }
  return { ...common, archive: deployment };
}

/** poolkeeper.specialize for the resolved function revision; the instance carries its concurrency. */
export async function requestInstance(
  d: AdmissionDeps,
  r: Resolved,
  loadFailures: LoadFailures,
  log: Logger,
): Promise<Instance> {
  const { fn, env } = r;
  const { namespace, name, revision } = fn.metadata;
  const key = revisionKey(namespace, name, revision);
  const concurrency = effectiveConcurrency(fn, env);
  const startedAt = performance.now();
  let instance: Instance;
  try {
    instance = await d.poolkeeper.specialize(specializeRequestOf(fn, concurrency));
  } catch (err) {
    const fe = FizzError.from(err);
    loadFailures.remember(key, fe, d.now());
    log.warn({ function: key, code: fe.code, err: fe.message }, "specialization failed");
    throw fe;
  }
  const got = instance.function;
  if (
    instance.state !== "specialized" ||
    got?.namespace !== namespace ||
    got.name !== name ||
    got.revision !== revision
  ) {
    // Routing to an instance loaded with anything else would serve the wrong code.
    log.error(
      { function: key, instance },
      "poolkeeper answered specialize with another function's instance",
    );
    throw new FizzError(
      "INTERNAL",
      `poolkeeper returned instance ${instance.id} not specialized with ${key}`,
    );
  }
  log.info(
    { function: key, instance: instance.id, ms: Math.round(performance.now() - startedAt) },
    "specialized",
  );
  return instance.concurrency ? instance : { ...instance, concurrency };
}

/**
 * Into the table and the route cache; undefined when the instance is no longer wanted. The route
 * write is under way, not done, when this returns.
 */
export function admitInstance(
  d: AdmissionDeps,
  instance: Instance,
  r: Resolved,
  log: Logger,
): Tracked | undefined {
  const { uid, revision, namespace, name } = r.fn.metadata;
  const now = d.now();
  if (d.table.isTombstoned(instance.id, now)) return undefined; // died before its reply reached us
  const t = d.table.add(instance, now);
  if (!t) return undefined;
  const current = d.catalog.fn(namespace, name);
  if (current?.metadata.uid !== uid || current.metadata.revision !== revision) {
    d.retirer.retireNow([t], "function changed during specialization");
    return undefined;
  }
  // Not awaited: the lease does not need the route in Redis (other replicas adopt the instance
  // from the finished claim, the periodic reconcile from the poolkeeper's list), and sent now it
  // shares a round trip with the claim's finish on the same connection, which Redis runs after it.
  d.routes.put(t.instance).catch((err: unknown) => {
    // The instance is real and serving; the periodic reconcile adopts it into Redis later.
    log.error(
      { instance: t.id, err: (err as Error).message },
      "could not write the route to Redis",
    );
  });
  return t;
}
