import type { Environment } from "@fizz/events";
import { backoffMs } from "@fizz/kit";

/**
 * One environment's pool state and the rules that read only it: its target size, when a change
 * replaces its instances, and the crash-loop back-off of its refills (pool.ts says why they back
 * off). Apart from the Pool so these rules read without the spawning and the instance table.
 */
export interface EnvState {
  key: string;
  env: Environment;
  /** Why the backend cannot run it; such an environment gets no instances. */
  unsupported: string | undefined;
  /** Bumped when the image or command changes: instances of an older generation are not kept. */
  generation: number;
  /** Ready warm instance ids, oldest first; take() hands out the oldest (pool-instances.ts says why). */
  warm: string[];
  starting: number;
  failures: number;
  /** Cancels the pending refill (back-off, cooldown, or after a take); set while one is pending. */
  cancelRefill: (() => void) | undefined;
}

export function newEnvState(
  key: string,
  env: Environment,
  unsupported: string | undefined,
): EnvState {
  return {
    key,
    env,
    unsupported,
    generation: 0,
    warm: [],
    starting: 0,
    failures: 0,
    cancelRefill: undefined,
  };
}

/** How many warm instances the environment should have: none when the backend cannot run it. */
export function poolTarget(state: EnvState): number {
  return state.unsupported ? 0 : state.env.spec.poolSize;
}

/** A new image or command: instances of the old one are not kept. */
export function changesInstances(cur: Environment, next: Environment): boolean {
  return (
    cur.spec.image !== next.spec.image ||
    JSON.stringify(cur.spec.command ?? null) !== JSON.stringify(next.spec.command ?? null)
  );
}

/** Cancels a pending back-off or cooldown refill. */
export function clearRefill(state: EnvState): void {
  state.cancelRefill?.();
  state.cancelRefill = undefined;
}

/** The crash-loop limits, with the back-off defaults applied. */
export interface RefillBackoff {
  maxFailures: number;
  cooldownMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
}

/**
 * The wait before the next probe spawn of a failing environment: exponential back-off, and
 * `cooldownMs` once `maxFailures` in a row have paused it.
 */
export function refillDelay(
  failures: number,
  o: RefillBackoff,
): { paused: boolean; delay: number } {
  const paused = failures >= o.maxFailures;
  const delay = paused ? o.cooldownMs : backoffMs(failures - 1, o.backoffBaseMs, o.backoffMaxMs);
  return { paused, delay };
}

/** For tests and diagnostics (Pool.status). */
export function envStatus(
  s: EnvState,
  maxFailures: number,
): { warm: number; starting: number; failures: number; paused: boolean } {
  return {
    warm: s.warm.length,
    starting: s.starting,
    failures: s.failures,
    paused: s.failures >= maxFailures,
  };
}
