import { FizzError } from "@fizz/events";
import {
  DEFAULT_DUPLICATE_WINDOW_MS,
  int,
  loadCommon,
  str,
  type CommonConfig,
  type Env,
} from "@fizz/kit";

export interface SchedulerConfig extends CommonConfig {
  /** Ops server (/healthz, /readyz, /metrics). Port 0 picks a free port. */
  host: string;
  port: number;
  /** How long a FUNCTION_LOAD_FAILED is answered from memory for one function revision. */
  loadFailureTtlMs: number;
  /** How long a drained instance keeps serving in-flight requests before it is retired. */
  drainMs: number;
  reapIntervalMs: number;
  /** NATS request timeout for poolkeeper.specialize (code push + load). */
  specializeTimeoutMs: number;
  /** NATS request timeout for every other request (registry.get/list, poolkeeper.retire/list). */
  rpcTimeoutMs: number;
  /** Periodic reconcile with poolkeeper.list, catching instance events lost on the bus. */
  reconcileIntervalMs: number;
  /**
   * Expiry of a specialization claim in Redis: how long the replicas wait for a claimant that
   * crashed mid-specialization. Longer than specializeTimeoutMs, so a slow live one never loses it.
   */
  claimTtlMs: number;
  /** How often a lease waiting for another replica's specialization reads the claim. */
  claimPollMs: number;
  /** After a failed minInstances top-up, how long before that function is tried again. */
  minInstancesRetryMs: number;
  /** TTL of the timer leader's lock in NATS KV (fizz_timer_leader); the leader renews it every quarter of this. */
  timerLeaseMs: number;
  /**
   * How late a timer tick may still fire. Of several ticks missed (no leader, a stalled process,
   * the stream down), only the most recent fires, once, and only if it is at most this old; the
   * others are skipped and logged.
   */
  timerCatchupMs: number;
}

/**
 * JetStream's duplicate window on the invocation stream (ensureBus's default). A catch-up tick
 * re-published with the same callId is dropped only within it, so the catch-up may not reach
 * further back, or a tick the old leader published (but did not record) could fire twice.
 */
export const INVOCATION_DEDUPE_WINDOW_MS = DEFAULT_DUPLICATE_WINDOW_MS;

export function loadConfig(env: Env): SchedulerConfig {
  const specializeTimeoutMs = int(env, "FIZZ_SPECIALIZE_TIMEOUT_MS", 45_000, 100, 600_000);
  const claimTtlMs = int(
    env,
    "FIZZ_CLAIM_TTL_MS",
    Math.max(30_000, specializeTimeoutMs + 5000),
    200,
    3_600_000,
  );
  if (claimTtlMs <= specializeTimeoutMs) {
    throw new FizzError(
      "VALIDATION_FAILED",
      `FIZZ_CLAIM_TTL_MS: must be greater than FIZZ_SPECIALIZE_TIMEOUT_MS (${specializeTimeoutMs}), got "${claimTtlMs}"; a claim expiring during a specialization would let another replica start a second one`,
      { field: "FIZZ_CLAIM_TTL_MS" },
    );
  }
  const timerCatchupMs = int(env, "FIZZ_TIMER_CATCHUP_MS", 60_000, 1000, 3_600_000);
  if (timerCatchupMs > INVOCATION_DEDUPE_WINDOW_MS) {
    throw new FizzError(
      "VALIDATION_FAILED",
      `FIZZ_TIMER_CATCHUP_MS: must be at most ${INVOCATION_DEDUPE_WINDOW_MS} (the invocation stream's duplicate window), got "${timerCatchupMs}"; an older catch-up could fire a tick twice`,
      { field: "FIZZ_TIMER_CATCHUP_MS" },
    );
  }
  return {
    ...loadCommon(env),
    host: str(env, "FIZZ_SCHEDULER_HOST", "127.0.0.1"),
    port: int(env, "FIZZ_SCHEDULER_PORT", 0, 0, 65535),
    loadFailureTtlMs: int(env, "FIZZ_LOAD_FAILURE_TTL_MS", 5000, 0, 3_600_000),
    drainMs: int(env, "FIZZ_DRAIN_MS", 2000, 0, 3_600_000),
    reapIntervalMs: int(env, "FIZZ_REAP_INTERVAL_MS", 1000, 10, 3_600_000),
    specializeTimeoutMs,
    rpcTimeoutMs: int(env, "FIZZ_SCHEDULER_RPC_TIMEOUT_MS", 5000, 100, 600_000),
    reconcileIntervalMs: int(env, "FIZZ_RECONCILE_INTERVAL_MS", 30_000, 100, 86_400_000),
    claimTtlMs,
    claimPollMs: int(env, "FIZZ_CLAIM_POLL_MS", 50, 5, 10_000),
    minInstancesRetryMs: int(env, "FIZZ_MIN_INSTANCES_RETRY_MS", 5000, 10, 3_600_000),
    timerLeaseMs: int(env, "FIZZ_TIMER_LEASE_MS", 10_000, 300, 600_000),
    timerCatchupMs,
  };
}
