import type { NextFunction, Request, Response } from "express";
import { isKindPlural } from "@fizz/events";
import { createMetricsRegistry } from "@fizz/kit";
import { Counter, Histogram, type Registry } from "prom-client";

export interface RegistryMetrics {
  registry: Registry;
  requests: Counter<"route" | "method" | "status">;
  duration: Histogram<"route" | "method" | "status">;
  txRetries: Counter;
  published: Counter<"kind" | "op" | "result">;
  barriers: Counter<"result">;
}

export function createMetrics(): RegistryMetrics {
  const registry = createMetricsRegistry("registry");
  const labelNames = ["route", "method", "status"] as const;
  return {
    registry,
    requests: new Counter({
      name: "fizz_registry_http_requests_total",
      help: "HTTP requests answered",
      labelNames,
      registers: [registry],
    }),
    duration: new Histogram({
      name: "fizz_registry_http_request_duration_seconds",
      help: "HTTP request duration",
      labelNames,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    txRetries: new Counter({
      name: "fizz_registry_store_transaction_retries_total",
      help: "store transactions run again because a watched key changed",
      registers: [registry],
    }),
    published: new Counter({
      name: "fizz_registry_change_events_total",
      help: "registry.changed events published",
      labelNames: ["kind", "op", "result"],
      registers: [registry],
    }),
    barriers: new Counter({
      name: "fizz_registry_update_barriers_total",
      help: "update barriers after function/httptrigger writes: complete, incomplete (a live gateway did not confirm in time), none (no live gateway)",
      labelNames: ["result"],
      registers: [registry],
    }),
  };
}

/**
 * Counts and times every request by route pattern, never by raw URL: object names in a label
 * would grow the series without bound.
 */
export function httpMetrics(m: RegistryMetrics) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    res.once("finish", () => {
      const labels = {
        route: routeLabel(req, res),
        method: req.method,
        status: String(res.statusCode),
      };
      m.requests.inc(labels);
      m.duration.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
    });
    next();
  };
}

const OPS_PATHS = new Set(["/healthz", "/readyz", "/metrics"]);

/** Records the kind when a route matches: by "finish" an error has already reset `req.params`. */
export function rememberKind(
  _req: Request,
  res: Response,
  next: NextFunction,
  kind: unknown,
): void {
  if (typeof kind === "string" && isKindPlural(kind)) res.locals.kind = kind;
  next();
}

function routeLabel(req: Request, res: Response): string {
  const pattern = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof pattern === "string") {
    const kind: unknown = res.locals.kind;
    return typeof kind === "string" ? pattern.replace(":kind", kind) : pattern;
  }
  return OPS_PATHS.has(req.path) ? req.path : "unmatched";
}
