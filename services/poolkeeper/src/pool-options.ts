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
  onSpawned?: (seconds: number, ok: boolean) => void;
  /**
   * The back-off, cooldown and stable timers; fake in unit tests. Real ones are unref'd (kit's
   * backgroundClock), as they always were: a pending back-off does not keep the process alive.
   */
  clock?: Pick<Clock, "after">;
}
