import { FizzError } from "@fizz/events";

/** The environment as ../config.ts reads it (not imported from there: config.ts imports this). */
type Env = Readonly<Record<string, string | undefined>>;

/** OpenTelemetry export, from the standard OTEL_* variables (read once, by loadCommon). */
export interface TracingConfig {
  /** Where spans are POSTed (OTLP/HTTP, JSON): the traces URL itself. */
  tracesUrl: string;
  /** OTEL_SERVICE_NAME; otherwise `fizz-<service>`. */
  serviceName: string | undefined;
  sampler: SamplerName;
  /** OTEL_TRACES_SAMPLER_ARG for the ratio samplers. */
  ratio: number;
}

export const SAMPLERS = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
] as const;
export type SamplerName = (typeof SAMPLERS)[number];

function bad(name: string, why: string): FizzError {
  return new FizzError("VALIDATION_FAILED", `${name}: ${why}`, { field: name });
}

function httpUrl(name: string, v: string): URL {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    // Not echoed: the endpoint may carry credentials, and this message is logged.
    throw bad(name, "must be a URL (http://host:port)");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw bad(name, `must use http or https, got "${u.protocol}"`);
  return u;
}

/**
 * Undefined (export off) unless OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or
 * OTEL_EXPORTER_OTLP_ENDPOINT (`/v1/traces` appended, as the OTLP spec says) is set, or when
 * OTEL_SDK_DISABLED=true. Samplers other than the simple ones are refused by name.
 */
export function loadTracingConfig(env: Env): TracingConfig | undefined {
  if (/^true$/i.test(env.OTEL_SDK_DISABLED ?? "")) return undefined;
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT;
  let tracesUrl: string;
  if (traces !== undefined && traces !== "") {
    httpUrl("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces);
    tracesUrl = traces;
  } else if (base !== undefined && base !== "") {
    const u = httpUrl("OTEL_EXPORTER_OTLP_ENDPOINT", base);
    u.pathname = `${u.pathname.replace(/\/+$/, "")}/v1/traces`;
    tracesUrl = u.toString();
  } else {
    return undefined;
  }
  const samplerRaw = (env.OTEL_TRACES_SAMPLER ?? "").trim().toLowerCase();
  const sampler = (samplerRaw === "" ? "parentbased_always_on" : samplerRaw) as SamplerName;
  if (!SAMPLERS.includes(sampler))
    throw bad("OTEL_TRACES_SAMPLER", `must be one of ${SAMPLERS.join(", ")}, got "${samplerRaw}"`);
  const argRaw = (env.OTEL_TRACES_SAMPLER_ARG ?? "").trim();
  let ratio = 1;
  if (argRaw !== "" && sampler.endsWith("traceidratio")) {
    ratio = Number(argRaw);
    if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1)
      throw bad("OTEL_TRACES_SAMPLER_ARG", `must be a number between 0 and 1, got "${argRaw}"`);
  }
  const name = (env.OTEL_SERVICE_NAME ?? "").trim();
  return { tracesUrl, serviceName: name === "" ? undefined : name, sampler, ratio };
}

/** The endpoint as logged: no user info, no query (either may hold a collector's credentials). */
export function shownEndpoint(url: string): string {
  const u = new URL(url);
  u.username = "";
  u.password = "";
  u.search = "";
  return u.toString();
}
