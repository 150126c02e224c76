import { Counter, Gauge, type Registry } from "prom-client";
import { RequestStats, STATUS_CLASSES, StatsHistogram } from "./request-stats";
import type { FunctionStatsTable } from "../stats/function-stats";
import { registerFunctionMetrics, type FunctionQueue } from "../stats/function-metrics";

/** What the front door records a request against: the function's state object (FunctionLeases). */
interface Target {
  readonly namespace: string;
  readonly name: string;
  stats: RequestStats | undefined;
}

/**
 * Gateway metrics. Per-request numbers (answers by status class, durations, the hour of history)
 * go into the function's FunctionStats, found through the function's state object (no map lookup
 * per request), and become Prometheus series only at scrape time (`request-stats.ts`,
 * `../stats/function-metrics.ts`).
 *
 * `fizz_gateway_requests_total` and `fizz_gateway_request_duration_seconds` (label
 * function="ns/name") are kept for existing dashboards; `fizz_function_*` supersede them.
 */
export class GatewayMetrics {
  readonly leaseRequests: Counter<"outcome">;
  readonly retries: Counter<"reason">;
  readonly queueRejected: Counter<"reason">;
  /** Requests waiting at a capacity limit; read at scrape time, not kept per request. */
  queued: () => number = () => 0;
  /** Every function's queue, read at scrape time (the LeaseManager's functions). */
  queues: () => Iterable<FunctionQueue> = () => [];
  /** Requests that matched no function (404s, bad requests before routing). */
  private readonly unrouted = new RequestStats();

  constructor(
    registry: Registry,
    readonly functions: FunctionStatsTable,
  ) {
    const unrouted = this.unrouted;
    const legacy = function* (): Generator<[Record<string, string>, RequestStats]> {
      for (const s of functions.all())
        if (s.count > 0) yield [{ function: `${s.namespace}/${s.name}` }, s];
      if (unrouted.count > 0) yield [{ function: "none" }, unrouted];
    };
    new Counter({
      name: "fizz_gateway_requests_total",
      help: "HTTP requests answered, by function (namespace/name, or none) and status class",
      labelNames: ["function", "class"],
      registers: [registry],
      collect() {
        this.reset();
        for (const [labels, s] of legacy())
          STATUS_CLASSES.forEach((cls, i) => {
            const n = s.classes[i] ?? 0;
            if (n > 0) this.inc({ ...labels, class: cls }, n);
          });
      },
    });
    new StatsHistogram(
      {
        name: "fizz_gateway_request_duration_seconds",
        help: "Time from request to the end of the response, by function",
        labelNames: ["function"],
      },
      registry,
      legacy,
    );
    registerFunctionMetrics(registry, functions, () => this.queues());
    this.leaseRequests = new Counter({
      name: "fizz_gateway_lease_requests_total",
      help: "scheduler.lease requests, by outcome (ok or the error code)",
      labelNames: ["outcome"],
      registers: [registry],
    });
    this.retries = new Counter({
      name: "fizz_gateway_upstream_retries_total",
      help: "Requests sent again to another instance, by reason",
      labelNames: ["reason"],
      registers: [registry],
    });
    this.queueRejected = new Counter({
      name: "fizz_gateway_queue_rejections_total",
      help: "Requests refused with 429 at a function's capacity limit: queue full or wait timed out",
      labelNames: ["reason"],
      registers: [registry],
    });
    const queued = () => this.queued();
    new Gauge({
      name: "fizz_gateway_queued_requests",
      help: "Requests waiting for a slot of a function at its capacity limit",
      registers: [registry],
      collect() {
        this.set(queued());
      },
    });
  }

  /** Records one answered request; `startedAt` from performance.now(). */
  observe(target: Target | undefined, status: number, startedAt: number): void {
    const end = performance.now();
    const seconds = (end - startedAt) / 1000;
    if (target === undefined) return this.unrouted.record(status, seconds);
    let s = target.stats;
    if (s === undefined || s.retired)
      s = target.stats = this.functions.of(target.namespace, target.name);
    s.record(status, seconds, end);
  }
}
