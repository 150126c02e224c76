import type { Clock, Logger } from "@fizz/kit";
import type { Backend, ExitInfo } from "./backend";
import type { Tracked } from "./instances";

/** What a Pool is built with (pool.ts): its backend, crash-loop limits, timers and callbacks. */
export interface PoolOptions {
  backend: Backend;
  logger: Logger;
  maxFailures: number;
  cooldownMs: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  stableMs?: number;
  onReady?: (t: Tracked) => void;
  onDied?: (t: Tracked, info: ExitInfo) => void;
  /** Seconds from the spawn's admission at the gate (not its queueing) until it is ready. */
  onSpawned?: (seconds: number, ok: boolean) => void;
  /**
   * Backend spawns running at once (spawn-gate.ts), cold starts first; unlimited when absent or
   * 0 (Kubernetes: pods start on other nodes).
   */
  spawnConcurrency?: number;
  /**
   * How long a cold start may wait at the gate before its caller has surely given up (the
   * scheduler's specialize timeout): it is then turned away instead of spawned. None by default.
   */
  spawnQueueTimeoutMs?: number;
  /** How long after a take its refill starts (Pool.refillAfterTake); at once when absent or 0. */
  refillAfterTakeMs?: number;
  /**
   * The back-off, cooldown and stable timers; fake in unit tests. Real ones are unref'd (kit's
   * backgroundClock), as they always were: a pending back-off does not keep the process alive.
   * Its `now`, when given, is the spawn gate's clock (queue deadlines).
   */
  clock?: Pick<Clock, "after"> & Partial<Pick<Clock, "now">>;
}
