import { FizzError } from "@fizz/events";
import { loadTracingConfig, type TracingConfig } from "./tracing/config";

/**
 * Small readers for `FIZZ_*` variables. Each names the variable in its error, so a bad deployment
 * fails at start with "FIZZ_GATEWAY_PORT: must be an integer between 1 and 65535", not later.
 */
export type Env = Readonly<Record<string, string | undefined>>;

function bad(name: string, why: string): FizzError {
  return new FizzError("VALIDATION_FAILED", `${name}: ${why}`, { field: name });
}

export function str(env: Env, name: string, fallback: string): string {
  const v = env[name];
  return v === undefined || v === "" ? fallback : v;
}

export function optionalStr(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

export function int(
  env: Env,
  name: string,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const v = env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw bad(name, `must be an integer between ${min} and ${max}, got "${v}"`);
  return n;
}

export function bool(env: Env, name: string, fallback: boolean): boolean {
  const v = env[name];
  if (v === undefined || v === "") return fallback;
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  throw bad(name, `must be true or false, got "${v}"`);
}

export function url(env: Env, name: string, fallback: string, protocols: string[]): string {
  const v = str(env, name, fallback);
  let parsed: URL;
  try {
    parsed = new URL(v);
  } catch {
    throw bad(name, `must be a URL, got "${v}"`);
  }
  if (!protocols.includes(parsed.protocol.replace(/:$/, ""))) {
    throw bad(name, `must use ${protocols.join(" or ")}, got "${parsed.protocol}"`);
  }
  return v;
}

export function oneOf<T extends string>(
  env: Env,
  name: string,
  fallback: T,
  allowed: readonly T[],
): T {
  const v = str(env, name, fallback);
  if (!(allowed as readonly string[]).includes(v))
    throw bad(name, `must be one of ${allowed.join(", ")}, got "${v}"`);
  return v as T;
}

/** Settings every service shares. */
export interface CommonConfig {
  /**
   * Credentials (FIZZ_NATS_USER/PASSWORD) and the TLS CA (FIZZ_NATS_TLS_CA, as `?ca=<file>`) are
   * folded into the URL, which connectNats takes apart again; log it only through redactUrl.
   */
  natsUrl: string;
  /** Same for FIZZ_REDIS_USER/PASSWORD and FIZZ_REDIS_TLS_CA (with a `rediss://` URL). */
  redisUrl: string;
  subjectPrefix: string;
  redisPrefix: string;
  logLevel: string;
  /** OpenTelemetry export (OTEL_EXPORTER_OTLP_*); undefined = off (tracing/config.ts). */
  tracing: TracingConfig | undefined;
}

export function loadCommon(env: Env): CommonConfig {
  const natsUrl = url(env, "FIZZ_NATS_URL", "nats://127.0.0.1:4222", ["nats", "tls"]);
  const redisUrl = url(env, "FIZZ_REDIS_URL", "redis://127.0.0.1:6379", ["redis", "rediss"]);
  return {
    natsUrl: withAuth(env, natsUrl, "FIZZ_NATS"),
    redisUrl: withAuth(env, redisUrl, "FIZZ_REDIS"),
    subjectPrefix: str(env, "FIZZ_SUBJECT_PREFIX", "fizz.v1"),
    redisPrefix: str(env, "FIZZ_REDIS_PREFIX", "fizz:v1:"),
    logLevel: oneOf(env, "FIZZ_LOG_LEVEL", "info", [
      "trace",
      "debug",
      "info",
      "warn",
      "error",
      "fatal",
      "silent",
    ]),
    tracing: loadTracingConfig(env),
  };
}

/**
 * Puts `<base>_USER`/`<base>_PASSWORD` and `<base>_TLS_CA` into a server URL. Either half of a
 * user/password pair alone is a deployment mistake, refused at start rather than as an auth loop.
 */
function withAuth(env: Env, raw: string, base: string): string {
  const user = optionalStr(env, `${base}_USER`);
  const password = optionalStr(env, `${base}_PASSWORD`);
  const ca = optionalStr(env, `${base}_TLS_CA`);
  if (password !== undefined && user === undefined && base === "FIZZ_NATS")
    throw bad(`${base}_USER`, `is required when ${base}_PASSWORD is set`);
  if (user !== undefined && password === undefined)
    throw bad(`${base}_PASSWORD`, `is required when ${base}_USER is set`);
  const u = new URL(raw);
  if (password !== undefined) {
    // Redis's `default` user authenticates with a password alone.
    u.username = encodeURIComponent(user ?? "default");
    u.password = encodeURIComponent(password);
  }
  if (ca !== undefined) u.searchParams.set("ca", ca);
  return u.toString();
}

/** A URL without its credentials, the only form a URL may take in a log line. */
export function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    if (!u.username && !u.password) return raw;
    u.username = "";
    u.password = "";
    return u.toString();
  } catch {
    return raw.replace(/\/\/[^@/]*@/, "//");
  }
}
