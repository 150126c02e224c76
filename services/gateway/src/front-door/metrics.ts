import { Counter, Gauge, type Registry } from "prom-client";
import { RequestStats, STATUS_CLASSES, StatsHistogram } from "./request-stats";

/**
 * Gateway metrics. Per-request numbers (answers by status class, durations) go into a
 * RequestStats per function, found through the function's state object (no map lookup per
 * request), and become Prometheus series only at scrape time (`request-stats.ts`).
 */
export class GatewayMetrics {
  readonly requests: Counter<"function" | "class">;
  readonly duration: StatsHistogram;
  readonly leaseRequests: Counter<"outcome">;
  readonly retries: Counter<"reason">;
  readonly queueRejected: Counter<"reason">;
  /** Requests waiting at a capacity limit; read at scrape time, not kept per request. */
  queued: () => number = () => 0;
  /** By function key (`ns/name`, or `none`); never shrinks, like a counter's label set. */
  private readonly stats = new Map<string, RequestStats>();
  private readonly unrouted: RequestStats;

  constructor(registry: Registry) {
    const stats = this.stats;
    this.requests = new Counter({
      name: "fizz_gateway_requests_total",
      help: "HTTP requests answered, by function (namespace/name, or none) and status class",
      labelNames: ["function", "class"],
      registers: [registry],
      collect() {
        this.reset();
        for (const [fn, s] of stats)
          STATUS_CLASSES.forEach((cls, i) => {
            const n = s.classes[i] ?? 0;
            if (n > 0) this.inc({ function: fn, class: cls }, n);
          });
      },
    });
    this.duration = new StatsHistogram(
      {
        name: "fizz_gateway_request_duration_seconds",
        help: "Time from request to the end of the response, by function",
      },
      registry,
      () => stats,
    );
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
    this.unrouted = this.statsOf("none");
  }

  /** Records one answered request; `startedAt` from performance.now(). */
  observe(
    target: { key: string; stats: RequestStats | undefined } | undefined,
    status: number,
    startedAt: number,
  ): void {
    let s = this.unrouted;
    if (target !== undefined) s = target.stats ??= this.statsOf(target.key);
    s.record(status, (performance.now() - startedAt) / 1000);
  }

  private statsOf(fn: string): RequestStats {
    let s = this.stats.get(fn);
    if (!s) this.stats.set(fn, (s = new RequestStats()));
    return s;
  }
}
