import {
  type Environment,
  type EnvironmentRef,
  type FunctionRef,
  type SkippedObject,
} from "@fizz/events";
import { ListingWindow } from "@fizz/kit";
import type { AdoptedInstance } from "./backend";
import { envKey, type InstanceCounts, type Tracked } from "./instances";
import { changesInstances, clearRefill, envStatus, newEnvState } from "./pool-env-state";
import { PoolInstances } from "./pool-instances";

export type { PoolOptions } from "./pool-options";

/**
 * Warm pools, one per environment, and the table of every instance this poolkeeper started. The
 * environments (events, listings, what the backend can run) are kept here; taking, spawning,
 * refilling and killing instances are in pool-instances.ts, with the accounting invariant.
 */
export class Pool extends PoolInstances {
  /**
   * uids of deleted environments: a registry.get answer (the specialize path) that crosses the
   * delete must not bring one back. Listings have the window below.
   */
  private readonly deleted = new Set<string>();
  /** Writes (events, fetched environments) made while a listing is in flight win over it. */
  private readonly window = new ListingWindow();

  /** Adds an environment or applies a change to it (a stale revision is ignored). */
  upsert(env: Environment): void {
    const key = envKey(env.metadata);
    this.window.touch(key);
    if (this.stopped || this.deleted.has(env.metadata.uid)) return;
    const cur = this.envs.get(key);
    const unsupported = this.opts.backend.unsupported(env);
    if (unsupported && unsupported !== cur?.unsupported)
      this.log.warn(
        { environment: key, reason: unsupported },
        "environment skipped: cannot run it here",
      );
    if (!cur) {
      const state = newEnvState(key, env, unsupported);
      this.envs.set(key, state);
      this.reconcile(state);
      return;
    }
    const sameObject = cur.env.metadata.uid === env.metadata.uid;
    if (sameObject && env.metadata.revision < cur.env.metadata.revision) return;
    const recreate = !sameObject || changesInstances(cur.env, env);
    cur.env = env;
    cur.unsupported = unsupported;
    if (recreate) {
      cur.generation++;
      cur.failures = 0;
      clearRefill(cur);
      for (const id of cur.warm.splice(0)) void this.kill(id, "environment changed");
    }
    this.reconcile(cur);
  }

  /** Forgets an environment and kills its warm instances; specialized ones keep serving. */
  remove(ref: EnvironmentRef, uid?: string): void {
    if (uid !== undefined) {
      this.deleted.add(uid);
      // Bounded: only listings in flight during the delete need it.
      if (this.deleted.size > 1000)
        this.deleted.delete(this.deleted.values().next().value as string);
    }
    this.window.touch(envKey(ref));
    const state = this.envs.get(envKey(ref));
    if (!state || (uid !== undefined && state.env.metadata.uid !== uid)) return;
    this.envs.delete(state.key);
    clearRefill(state);
    for (const id of state.warm.splice(0)) void this.kill(id, "environment deleted");
  }

  /** Call before sending registry.list; pass the answer to `replaceAll`. */
  beginListing(): void {
    this.window.begin();
  }

  /** A listing that failed: events are again the only news. */
  abortListing(): void {
    this.window.abort();
  }

  /**
   * Applies a full listing (requested after `beginListing`): adds and updates what it holds, and
   * forgets what it lacks, except environments written since the listing was asked for (kit's
   * ListingWindow: the listing is older than what we know of them) and those the registry
   * `skipped` (it could not read them; they still exist, and their pools stay).
   */
  replaceAll(items: Environment[], skipped: SkippedObject[] = []): void {
    const { apply, remove } = this.window.merge(
      items,
      (e) => envKey(e.metadata),
      this.envs.keys(),
      skipped,
    );
    for (const key of remove) {
      const state = this.envs.get(key);
      if (state) this.remove(state.env.metadata);
    }
    for (const env of apply) this.upsert(env);
  }

  /**
   * Asks the backend again whether it can run each environment: an interpreter installed or a
   * runtime prepared since (npm start's set-up, apt-get by hand) fills the pool without an
   * environment change, and one removed stops the refills with the reason. A few stat() calls
   * per environment; the index calls it every RECHECK_UNSUPPORTED_MS.
   */
  recheckUnsupported(): void {
    if (this.stopped) return;
    for (const state of this.envs.values()) {
      const now = this.opts.backend.unsupported(state.env);
      if (now === state.unsupported) continue;
      state.unsupported = now;
      if (now === undefined)
        this.log.info({ environment: state.key }, "environment can run here now: filling its pool");
      else
        this.log.warn(
          { environment: state.key, reason: now },
          "environment skipped: cannot run it here",
        );
      this.reconcile(state);
    }
  }

  environment(
    ref: EnvironmentRef,
  ): { env: Environment; unsupported: string | undefined } | undefined {
    const s = this.envs.get(envKey(ref));
    return s && { env: s.env, unsupported: s.unsupported };
  }

  /**
   * Takes in specialized instances a backend found at start (pods an earlier poolkeeper left), as
   * they are: the scheduler finds them in poolkeeper.list and keeps or retires them.
   */
  adopt(found: AdoptedInstance[]): void {
    for (const a of found) {
      if (this.instances.has(a.instance.id)) continue;
      this.instances.set(a.instance.id, {
        instance: a.instance,
        envKey: envKey(a.instance.environment),
        generation: this.envs.get(envKey(a.instance.environment))?.generation ?? 0,
        state: "specialized",
        killing: false,
        function: a.function,
        concurrency: a.concurrency,
        specializedAt: a.specializedAt,
      });
    }
  }

  /** Records a successful specialization; undefined when the instance is gone meanwhile. */
  markSpecialized(id: string, fn: FunctionRef, concurrency: number): Tracked | undefined {
    const t = this.instances.get(id);
    if (!t || t.killing) return undefined;
    t.state = "specialized";
    t.function = fn;
    t.concurrency = concurrency;
    t.specializedAt = Date.now();
    return t;
  }

  /** Starts refilling an environment's pool (after a kill, an exit). Never awaits a spawn. */
  refill(ref: EnvironmentRef): void {
    const state = this.envs.get(envKey(ref));
    if (state) this.reconcile(state);
  }

  /**
   * The refill after a take, `refillAfterTakeMs` later. The take's first call is still on its
   * way (scheduler, gateway, the instance) when the specialize has replied, and a process
   * backend's spawn forks this process (its loop blocked ~5-10 ms, the fork's page-table copy
   * and the child's start-up on the same cores): started later, it no longer competes with that
   * call. The pending refill holds the environment's refill timer, so a reconcile meanwhile (an
   * exit, another take) adds nothing, and whatever clears that timer (a change of the
   * environment, a stable instance) reconciles at once itself.
   */
  refillAfterTake(ref: EnvironmentRef): void {
    const state = this.envs.get(envKey(ref));
    if (!state) return;
    const delay = this.opts.refillAfterTakeMs ?? 0;
    if (delay <= 0 || state.cancelRefill) return this.reconcile(state);
    state.cancelRefill = this.clock.after(delay, () => {
      state.cancelRefill = undefined;
      this.reconcile(state);
    });
  }

  /** Any tracked instance, including one being killed (its last output still has an owner). */
  get(id: string): Tracked | undefined {
    return this.instances.get(id);
  }

  list(): Tracked[] {
    return [...this.instances.values()].filter((t) => !t.killing);
  }

  counts(): InstanceCounts {
    const c: InstanceCounts = {
      starting: this.coldStarting,
      warm: 0,
      specializing: 0,
      specialized: 0,
    };
    for (const s of this.envs.values()) c.starting += s.starting;
    for (const t of this.instances.values()) if (!t.killing) c[t.state]++;
    return c;
  }

  /** Spawns waiting at the gate: cold starts and refills. */
  spawnQueue(): { taken: number; warm: number } {
    return this.gate.waiting;
  }

  /** For tests and diagnostics. */
  status(
    ref: EnvironmentRef,
  ): { warm: number; starting: number; failures: number; paused: boolean } | undefined {
    const s = this.envs.get(envKey(ref));
    return s && envStatus(s, this.opts.maxFailures);
  }

  /** Stops refilling; the backend's close() kills the instances. */
  stop(): void {
    this.stopped = true;
    this.gate.stop();
    for (const s of this.envs.values()) clearRefill(s);
    for (const t of this.instances.values()) t.cancelStable?.();
  }
}
