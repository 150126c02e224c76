import { FizzError } from "@fizz/events";

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
  natsUrl: string;
  redisUrl: string;
  subjectPrefix: string;
  redisPrefix: string;
  logLevel: string;
}

export function loadCommon(env: Env): CommonConfig {
  return {
    natsUrl: url(env, "FIZZ_NATS_URL", "nats://127.0.0.1:4222", ["nats", "tls"]),
    redisUrl: url(env, "FIZZ_REDIS_URL", "redis://127.0.0.1:6379", ["redis", "rediss"]),
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
  };
}
