import {
  FizzError,
  type Environment,
  type EnvironmentRef,
  type FunctionRef,
  type SkippedObject,
} from "@fizz/events";
import { backgroundClock, ListingWindow, type Clock, type Logger } from "@fizz/kit";
import type { AdoptedInstance, BackendInstance, ExitInfo } from "./backend";
import { envKey, type InstanceCounts, type Tracked } from "./instances";
import {
  changesInstances,
  clearRefill,
  envStatus,
  newEnvState,
  poolTarget,
  refillDelay,
  type EnvState,
  type RefillBackoff,
} from "./pool-env-state";
import type { PoolOptions } from "./pool-options";
import { SpawnGate } from "./spawn-gate";

export type { PoolOptions } from "./pool-options";

/**
 * Warm pools, one per environment, and the table of every instance this poolkeeper started.
 *
 * Accounting invariant: for each environment, `warm.length + starting` is what the pool will have
 * without further action; reconcile() spawns or kills to bring it to `spec.poolSize`. An instance
 * leaves `warm` the moment it is taken or chosen for a kill, so take() never hands out one that is
 * going away. Refills never happen inside take(): the specialize path calls refill() after it has
 * replied, so a spawn never delays a reply.
 *
 * Crash loops: a failed spawn, or a warm instance dying before it has been up `stableMs`, counts as
 * a failure. While an environment has failures, refills go one at a time with back-off, and after
 * `maxFailures` in a row they pause for `cooldownMs`. An instance that stays up `stableMs` clears
 * the count. So a loader that crashes at start costs a few spawns a minute, not a fork bomb.
 */
export class Pool {
  private readonly envs = new Map<string, EnvState>();
  private readonly instances = new Map<string, Tracked>();
  /**
   * uids of deleted environments: a registry.get answer (the specialize path) that crosses the
   * delete must not bring one back. Listings have the window below.
   */
  private readonly deleted = new Set<string>();
  /** Writes (events, fetched environments) made while a listing is in flight win over it. */
  private readonly window = new ListingWindow();
  private coldStarting = 0;
  private stopped = false;
  private readonly log: Logger;
  private readonly backoff: RefillBackoff;
  private readonly stableMs: number;
  private readonly clock: Pick<Clock, "after">;
  /** Every backend spawn goes through it: a burst of cold starts must not boot all at once. */
  private readonly gate: SpawnGate<Tracked>;

  constructor(private readonly opts: PoolOptions) {
    this.log = opts.logger.child({ component: "pool" });
    this.backoff = {
      maxFailures: opts.maxFailures,
      cooldownMs: opts.cooldownMs,
      backoffBaseMs: opts.backoffBaseMs ?? 250,
      backoffMaxMs: opts.backoffMaxMs ?? 10_000,
    };
    this.stableMs = opts.stableMs ?? 10_000;
    this.clock = opts.clock ?? backgroundClock;
    this.gate = new SpawnGate({ width: opts.spawnConcurrency ?? Infinity, now: opts.clock?.now });
    opts.backend.onExit((instance, info) => this.exited(instance, info));
  }

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
   * Takes the oldest warm instance (now "specializing"), or undefined when the pool is empty.
   * Oldest, not newest: an instance keeps warming after it reports ready (the Python runtime
   * imports Flask in the background, ~200 ms), so back-to-back cold starts should not all land
   * on the one that was just refilled.
   */
  take(ref: EnvironmentRef): Tracked | undefined {
    const state = this.envs.get(envKey(ref));
    for (;;) {
      const id = state?.warm.shift();
      if (id === undefined) return undefined;
      const t = this.instances.get(id);
      if (!t || t.killing) continue;
      t.state = "specializing";
      return t;
    }
  }

  /**
   * The empty-pool cold start: spawns one instance outside the pool, already taken. It waits at
   * the spawn gate first, ahead of refills; a refill that comes up meanwhile is handed to it
   * instead (spawnWarm), and one still queued past spawnQueueTimeoutMs (its caller has given up)
   * is turned away unspawned. `signal`: the caller gave up; the instance, if already started, goes
   * to the warm pool.
   */
  async spawnTaken(ref: EnvironmentRef, opts: { signal?: AbortSignal } = {}): Promise<Tracked> {
    const known = (): EnvState => {
      const s = this.envs.get(envKey(ref));
      if (s) return s;
      throw new FizzError("UNKNOWN_ENVIRONMENT", `environment ${envKey(ref)} is not known`, {
        field: "environment",
      });
    };
    const queueMs = this.opts.spawnQueueTimeoutMs;
    const admission = await this.gate.wait("taken", known().key, {
      deadline: queueMs === undefined ? undefined : this.gate.time() + queueMs,
      signal: opts.signal,
    });
    // Handed over synchronously by spawnWarm, which tracks it; no I/O ran since.
    if ("value" in admission) {
      admission.value.state = "specializing";
      return admission.value;
    }
    let state: EnvState;
    try {
      state = known();
    } catch (err) {
      admission.release();
      throw err;
    }
    const warm = this.take(ref);
    if (warm) {
      admission.release();
      return warm;
    }
    this.coldStarting++;
    const generation = state.generation;
    const started = performance.now();
    let instance: BackendInstance;
    try {
      instance = await this.opts.backend.spawn(state.env, { taken: true });
      this.opts.onSpawned?.((performance.now() - started) / 1000, true);
    } catch (err) {
      this.opts.onSpawned?.((performance.now() - started) / 1000, false);
      admission.release();
      throw err;
    } finally {
      this.coldStarting--;
    }
    // Released once the instance is placed: a cold start that would be admitted next may be
    // handed it instead (keepUnused).
    if (this.stopped) {
      admission.release();
      if (!this.opts.backend.instancesOutliveClose)
        void this.opts.backend.kill(instance.id, "poolkeeper stopping");
      throw new FizzError("UNAVAILABLE", "the poolkeeper is stopping");
    }
    const t: Tracked = {
      instance,
      envKey: state.key,
      generation: state.generation,
      state: "specializing",
      killing: false,
    };
    this.instances.set(instance.id, t);
    if (opts.signal?.aborted) {
      this.keepUnused(state, t, generation);
      admission.release();
      throw new FizzError("UNAVAILABLE", "the caller gave up while its instance started", {
        retryable: true,
      });
    }
    admission.release();
    return t;
  }

  /** A fresh instance nobody took after all: a waiting cold start, the warm pool, or a kill. */
  private keepUnused(state: EnvState, t: Tracked, generation: number): void {
    if (this.gate.handOff(state.key, t)) return;
    const current = this.envs.get(state.key) === state && generation === state.generation;
    if (!current || state.warm.length + state.starting >= poolTarget(state)) {
      void this.kill(t.instance.id, "started for a caller that gave up");
      return;
    }
    t.state = "warm";
    state.warm.push(t.instance.id);
    this.opts.onReady?.(t);
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

  /** Starts refilling an environment's pool (after a take, a kill). Never awaits a spawn. */
  refill(ref: EnvironmentRef): void {
    const state = this.envs.get(envKey(ref));
    if (state) this.reconcile(state);
  }

  /** Kills a tracked instance; resolves when it is gone. False when it is not ours. */
  async kill(id: string, reason: string): Promise<boolean> {
    const t = this.instances.get(id);
    if (!t) return false;
    t.killing = true;
    const state = this.envs.get(t.envKey);
    if (state) state.warm = state.warm.filter((w) => w !== id);
    return this.opts.backend.kill(id, reason);
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

  private reconcile(state: EnvState): void {
    if (this.stopped || this.envs.get(state.key) !== state) return;
    const target = poolTarget(state);
    const have = state.warm.length + state.starting;
    if (have > target) {
      // Newest first (take() hands out the oldest, the most warmed up); surplus still starting
      // is trimmed when it comes up (spawnWarm reconciles).
      const surplus = Math.min(state.warm.length, have - target);
      const keep = state.warm.length - surplus;
      for (const id of state.warm.splice(keep, surplus)) void this.kill(id, "pool resized");
      return;
    }
    if (have === target || state.cancelRefill) return;
    if (state.failures === 0) {
      for (let i = have; i < target; i++) this.spawnWarm(state);
      return;
    }
    // Failing: probe one at a time, with back-off, and pause after too many in a row.
    if (state.starting > 0) return;
    const { paused, delay } = refillDelay(state.failures, this.backoff);
    if (paused) {
      this.log.error(
        { environment: state.key, failures: state.failures, retryInMs: delay },
        "instances keep failing to start; pausing refills",
      );
    }
    state.cancelRefill = this.clock.after(delay, () => {
      state.cancelRefill = undefined;
      if (this.stopped || this.envs.get(state.key) !== state) return;
      if (state.warm.length + state.starting < poolTarget(state)) this.spawnWarm(state);
    });
  }

  /** Queues a refill at the gate: it counts as starting from now on, so reconcile adds no more. */
  private spawnWarm(state: EnvState): void {
    state.starting++;
    this.gate.enter({
      priority: "warm",
      key: state.key,
      admit: (release) => this.spawnAdmittedWarm(state, release),
      reject: () => state.starting--, // only when stopping
    });
  }

  private spawnAdmittedWarm(state: EnvState, release: () => void): void {
    // Still wanted? The environment may have gone, or shrunk, while this waited.
    if (
      this.stopped ||
      this.envs.get(state.key) !== state ||
      state.warm.length + state.starting > poolTarget(state)
    ) {
      state.starting--;
      release();
      return;
    }
    const generation = state.generation;
    const started = performance.now();
    this.opts.backend.spawn(state.env).then(
      (instance) => {
        state.starting--;
        this.opts.onSpawned?.((performance.now() - started) / 1000, true);
        const current =
          !this.stopped && this.envs.get(state.key) === state && state.generation === generation;
        if (!current) {
          // A pod left behind while stopping is adopted by the next poolkeeper.
          if (!this.stopped || !this.opts.backend.instancesOutliveClose)
            void this.opts.backend.kill(
              instance.id,
              this.stopped ? "poolkeeper stopping" : "environment changed",
            );
          release();
          this.reconcile(state);
          return;
        }
        const t: Tracked = {
          instance,
          envKey: state.key,
          generation,
          state: "warm",
          killing: false,
        };
        t.cancelStable = this.clock.after(this.stableMs, () => this.becameStable(state, t));
        this.instances.set(instance.id, t);
        // A cold start waiting at the gate for this environment takes it (no spawn of its own).
        if (!this.gate.handOff(state.key, t)) {
          state.warm.push(instance.id);
          this.opts.onReady?.(t);
        }
        release();
        this.reconcile(state);
      },
      (err: unknown) => {
        state.starting--;
        release();
        this.opts.onSpawned?.((performance.now() - started) / 1000, false);
        if (this.stopped || this.envs.get(state.key) !== state) return;
        if (state.generation === generation) state.failures++;
        this.log.warn(
          { environment: state.key, failures: state.failures, err: (err as Error).message },
          "could not start a warm instance",
        );
        this.reconcile(state);
      },
    );
  }

  private becameStable(state: EnvState, t: Tracked): void {
    t.cancelStable = undefined;
    if (
      state.failures === 0 ||
      this.envs.get(state.key) !== state ||
      state.generation !== t.generation
    )
      return;
    this.log.info(
      { environment: state.key },
      "instances start and stay up again; refilling normally",
    );
    state.failures = 0;
    clearRefill(state);
    this.reconcile(state);
  }

  private exited(instance: BackendInstance, info: ExitInfo): void {
    const t = this.instances.get(instance.id);
    if (!t) return;
    this.instances.delete(instance.id);
    const early = t.cancelStable !== undefined;
    t.cancelStable?.();
    const state = this.envs.get(t.envKey);
    if (state) state.warm = state.warm.filter((w) => w !== instance.id);
    if (!info.expected) {
      if (state && early && t.state === "warm" && t.generation === state.generation)
        state.failures++;
      this.opts.onDied?.(t, info);
    }
    if (state) this.reconcile(state);
  }
}
