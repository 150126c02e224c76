import { int, type Env } from "@fizz/kit";

/**
 * Settings of the gateway's bus side: the invoker (FIZZ_INVOCATIONS consumer), async HTTP and
 * message-queue triggers. Read by `loadConfig` (config.ts) into `GatewayConfig.bus`.
 */
export interface BusConfig {
  /** Bus-originated calls one gateway runs at once, all functions (async, timers, watches, mq triggers). */
  maxInflight: number;
  /**
   * JetStream ack wait of the invoker and mq trigger consumers; in-progress acks every third of it.
   * It bounds how long a call held by a crashed gateway waits before another one runs it.
   */
  ackWaitMs: number;
  /** First retry delay after a failed attempt; doubles per attempt (with jitter) up to retryMaxMs. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Response bodies stored in the call status (and dead letters) are cut to this. */
  resultMaxBytes: number;
  /** How long async call status stays readable (the KV bucket's TTL). */
  callRetentionMs: number;
  /** Attempts to POST a result to an X-Callback-Url (back-off between them), and each one's timeout. */
  callbackAttempts: number;
  callbackTimeoutMs: number;
}

export function loadBusConfig(env: Env): BusConfig {
  return {
    maxInflight: int(env, "FIZZ_INVOKER_MAX_INFLIGHT", 64, 1, 100_000),
    ackWaitMs: int(env, "FIZZ_INVOKER_ACK_WAIT_MS", 5000, 1000, 3_600_000),
    retryBaseMs: int(env, "FIZZ_INVOKER_RETRY_BASE_MS", 1000, 10, 3_600_000),
    retryMaxMs: int(env, "FIZZ_INVOKER_RETRY_MAX_MS", 60_000, 10, 86_400_000),
    resultMaxBytes: int(env, "FIZZ_CALL_RESULT_MAX_BYTES", 1024 * 1024, 0, 64 * 1024 * 1024),
    callRetentionMs: int(env, "FIZZ_CALL_RETENTION_MS", 24 * 3600 * 1000, 1000, 365 * 86_400_000),
    callbackAttempts: int(env, "FIZZ_CALLBACK_ATTEMPTS", 4, 1, 100),
    callbackTimeoutMs: int(env, "FIZZ_CALLBACK_TIMEOUT_MS", 10_000, 100, 600_000),
  };
}
