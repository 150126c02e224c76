import { int, loadCommon, str, type CommonConfig, type Env } from "@fizz/kit";
import { loadBusConfig, type BusConfig } from "./bus-config";

export interface GatewayConfig extends CommonConfig {
  host: string;
  /** 0 = a random port; start() returns the bound one. */
  port: number;
  /** Ops endpoints (/healthz, /readyz, /metrics) on their own port, so no user route can shadow them. */
  opsPort: number;
  maxBodyBytes: number;
  reportIntervalMs: number;
  /** NATS request timeout for scheduler.lease: a cold specialization must fit in it. */
  leaseTimeoutMs: number;
  /** How long a graceful stop waits for in-flight requests before cutting them. */
  drainTimeoutMs: number;
  /**
   * At maxInstances, how long a request may wait for a free slot before 429 (capped by the
   * function's own timeout).
   */
  queueTimeoutMs: number;
  /** At maxInstances, how many requests may wait per function before new ones get 429 at once. */
  queueMax: number;
  /** How often the gateway announces itself, so the registry's update barrier waits for it. */
  presenceIntervalMs: number;
  /** Invoker, async HTTP and message-queue triggers (bus-config.ts). */
  bus: BusConfig;
}

export function loadConfig(env: Env): GatewayConfig {
  return {
    ...loadCommon(env),
    host: str(env, "FIZZ_GATEWAY_HOST", "127.0.0.1"),
    port: int(env, "FIZZ_GATEWAY_PORT", 8080, 0, 65535),
    opsPort: int(env, "FIZZ_GATEWAY_OPS_PORT", 0, 0, 65535),
    maxBodyBytes: int(env, "FIZZ_MAX_BODY_BYTES", 16 * 1024 * 1024, 1),
    reportIntervalMs: int(env, "FIZZ_REPORT_INTERVAL_MS", 1000, 50, 3_600_000),
    leaseTimeoutMs: int(env, "FIZZ_LEASE_TIMEOUT_MS", 20_000, 100, 600_000),
    drainTimeoutMs: int(env, "FIZZ_GATEWAY_DRAIN_MS", 10_000, 0, 600_000),
    queueTimeoutMs: int(env, "FIZZ_QUEUE_TIMEOUT_MS", 10_000, 0, 600_000),
    queueMax: int(env, "FIZZ_QUEUE_MAX", 1000, 0, 1_000_000),
    presenceIntervalMs: int(env, "FIZZ_PRESENCE_INTERVAL_MS", 2000, 50, 60_000),
    bus: loadBusConfig(env),
  };
}
