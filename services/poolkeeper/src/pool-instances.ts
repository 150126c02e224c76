import { FizzError, type EnvironmentRef } from "@fizz/events";
import { backgroundClock, type Clock, type Logger } from "@fizz/kit";
import type { BackendInstance, ExitInfo } from "./backend";
import { envKey, type Tracked } from "./instances";
import {
  clearRefill,
  poolTarget,
  refillDelay,
  type EnvState,
  type RefillBackoff,
} from "./pool-env-state";
import type { PoolOptions } from "./pool-options";
import { SpawnGate } from "./spawn-gate";

/**
 * The instance side of the warm pools (pool.ts adds the environments and the service's API):
 * taking a warm instance, the empty-pool cold start, refills through the spawn gate, kills and
 * exits, and reconcile(), which keeps each pool at its size.
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
export class PoolInstances {
  protected readonly envs = new Map<string, EnvState>();
  protected readonly instances = new Map<string, Tracked>();
  protected coldStarting = 0;
  protected stopped = false;
  protected readonly log: Logger;
  private readonly backoff: RefillBackoff;
  private readonly stableMs: number;
  protected readonly clock: Pick<Clock, "after">;
  /** Every backend spawn goes through it: a burst of cold starts must not boot all at once. */
  protected readonly gate: SpawnGate<Tracked>;

  constructor(protected readonly opts: PoolOptions) {
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

  /** Kills a tracked instance; resolves when it is gone. False when it is not ours. */
  async kill(id: string, reason: string): Promise<boolean> {
    const t = this.instances.get(id);
    if (!t) return false;
    t.killing = true;
    const state = this.envs.get(t.envKey);
    if (state) state.warm = state.warm.filter((w) => w !== id);
    return this.opts.backend.kill(id, reason);
  }

  protected reconcile(state: EnvState): void {
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
