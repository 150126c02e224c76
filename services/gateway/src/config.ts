import { FizzError } from "@fizz/events";
import {
  int,
  loadCommon,
  oneOf,
  parseOutboundList,
  str,
  type CommonConfig,
  type Env,
} from "@fizz/kit";
import { loadBusConfig, type BusConfig } from "./bus/index";
import { parseTrustedProxies } from "./front-door/trusted-proxies";

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
  /** Distinct functions with their own metric series and history; more count as `_other`. */
  metricsMaxFunctions: number;
  /** Invoker, async HTTP and message-queue triggers (bus-config.ts). */
  bus: BusConfig;
  /** Hosts, IPs or CIDRs a callback may reach although internal (FIZZ_OUTBOUND_ALLOW). */
  outboundAllow: string[];
  /** Peers (addresses, CIDRs) whose X-Forwarded-Host/-Proto and Forwarded are passed on. */
  trustedProxies: string[];
  /** The platform's own endpoints a callback may never reach, even when allow-listed. */
  platformAddresses: string[];
  /** Open client connections beyond this are refused at accept. */
  maxConnections: number;
  /** A client must send its whole request head within this (slowloris). */
  headersTimeoutMs: number;
  /** A client must send its whole request (head and body) within this. */
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** A request body that stalls this long (while the function wants more) is cut off. */
  bodyIdleTimeoutMs: number;
  /**
   * The client-facing HTTP server: `own` (front-door/own-server.ts, the gateway's own on node's
   * llhttp, ~20% less CPU per request; the default, with a start-up self-check that falls back to
   * `node`) or `node` (http.Server).
   */
  frontend: "node" | "own";
}

/** Ports of the sibling services when `npm start` runs them on this host (platform.mjs). */
const SIBLING_PORTS = [
  "FIZZ_REGISTRY_PORT",
  "FIZZ_SCHEDULER_PORT",
  "FIZZ_POOLKEEPER_PORT",
  "FIZZ_KUBEWATCHER_PORT",
];

/** Every local spelling of `port`: a callback to any of them reaches the platform. */
export function localEndpoints(port: number): string[] {
  return [`127.0.0.0/8:${port}`, `[::1]:${port}`, `0.0.0.0:${port}`, `localhost:${port}`];
}

function platformAddresses(env: Env, common: CommonConfig): string[] {
  const out: string[] = [];
  try {
    out.push(...parseOutboundList(env.FIZZ_PLATFORM_ADDRESSES, true));
  } catch (err) {
    throw new FizzError("VALIDATION_FAILED", `FIZZ_PLATFORM_ADDRESSES: ${(err as Error).message}`, {
      field: "FIZZ_PLATFORM_ADDRESSES",
    });
  }
  for (const name of SIBLING_PORTS) {
    const port = int(env, name, 0, 0, 65535);
    if (port > 0) out.push(...localEndpoints(port));
  }
  for (const [raw, fallback] of [
    [common.natsUrl, 4222],
    [common.redisUrl, 6379],
  ] as const) {
    const u = new URL(raw);
    const port = Number(u.port) || fallback;
    out.push(`${u.hostname}:${port}`, ...localEndpoints(port));
  }
  return out;
}

export function loadConfig(env: Env): GatewayConfig {
  const common = loadCommon(env);
  let outboundAllow: string[];
  try {
    outboundAllow = parseOutboundList(env.FIZZ_OUTBOUND_ALLOW);
  } catch (err) {
    throw new FizzError("VALIDATION_FAILED", `FIZZ_OUTBOUND_ALLOW: ${(err as Error).message}`, {
      field: "FIZZ_OUTBOUND_ALLOW",
    });
  }
  let trustedProxies: string[];
  try {
    trustedProxies = parseTrustedProxies(env.FIZZ_TRUSTED_PROXIES);
  } catch (err) {
    throw new FizzError("VALIDATION_FAILED", `FIZZ_TRUSTED_PROXIES: ${(err as Error).message}`, {
      field: "FIZZ_TRUSTED_PROXIES",
    });
  }
  return {
    ...common,
    host: str(env, "FIZZ_GATEWAY_HOST", "127.0.0.1"),
    port: int(env, "FIZZ_GATEWAY_PORT", 8080, 0, 65535),
    opsPort: int(env, "FIZZ_GATEWAY_OPS_PORT", 0, 0, 65535),
    maxBodyBytes: int(env, "FIZZ_MAX_BODY_BYTES", 16 * 1024 * 1024, 1),
    reportIntervalMs: int(env, "FIZZ_REPORT_INTERVAL_MS", 1000, 50, 3_600_000),
    leaseTimeoutMs: int(env, "FIZZ_LEASE_TIMEOUT_MS", 60_000, 100, 600_000),
    drainTimeoutMs: int(env, "FIZZ_GATEWAY_DRAIN_MS", 10_000, 0, 600_000),
    queueTimeoutMs: int(env, "FIZZ_QUEUE_TIMEOUT_MS", 10_000, 0, 600_000),
    queueMax: int(env, "FIZZ_QUEUE_MAX", 1000, 0, 1_000_000),
    presenceIntervalMs: int(env, "FIZZ_PRESENCE_INTERVAL_MS", 2000, 50, 60_000),
    metricsMaxFunctions: int(env, "FIZZ_METRICS_MAX_FUNCTIONS", 2000, 1, 1_000_000),
    bus: loadBusConfig(env),
    outboundAllow,
    trustedProxies,
    platformAddresses: platformAddresses(env, common),
    maxConnections: int(env, "FIZZ_GATEWAY_MAX_CONNECTIONS", 10_000, 1, 1_000_000),
    headersTimeoutMs: int(env, "FIZZ_GATEWAY_HEADERS_TIMEOUT_MS", 10_000, 100, 600_000),
    requestTimeoutMs: int(env, "FIZZ_GATEWAY_REQUEST_TIMEOUT_MS", 300_000, 0, 3_600_000),
    keepAliveTimeoutMs: int(env, "FIZZ_GATEWAY_KEEPALIVE_TIMEOUT_MS", 65_000, 1000, 600_000),
    bodyIdleTimeoutMs: int(env, "FIZZ_GATEWAY_BODY_IDLE_TIMEOUT_MS", 30_000, 0, 3_600_000),
    frontend: oneOf(env, "FIZZ_GATEWAY_FRONTEND", "own", ["node", "own"] as const),
  };
}
