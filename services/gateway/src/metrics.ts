import { Counter, Histogram, type Registry } from "prom-client";

/**
 * Request metrics by function and status class. Label children are looked up once per function
 * and cached in a WeakMap keyed by the function's state object, because prom-client's label lookup
 * (hashing a labels object) per request would cost more than the rest of the bookkeeping.
 */
const CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const;

interface FunctionMetrics {
  counters: ReturnType<Counter<"function" | "class">["labels"]>[];
  duration: ReturnType<Histogram<"function">["labels"]>;
}

export class GatewayMetrics {
  readonly requests: Counter<"function" | "class">;
  readonly duration: Histogram<"function">;
  readonly leaseRequests: Counter<"outcome">;
  readonly retries: Counter<"reason">;
  private readonly byTarget = new WeakMap<object, FunctionMetrics>();
  private readonly unrouted: FunctionMetrics;

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: "fizz_gateway_requests_total",
      help: "HTTP requests answered, by function (namespace/name, or none) and status class",
      labelNames: ["function", "class"],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: "fizz_gateway_request_duration_seconds",
      help: "Time from request to the end of the response, by function",
      labelNames: ["function"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    });
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
    this.unrouted = this.children("none");
  }

  /** Records one answered request; `startedAt` from performance.now(). */
  observe(target: { key: string } | undefined, status: number, startedAt: number): void {
    let m = this.unrouted;
    if (target !== undefined) {
      const known = this.byTarget.get(target);
      if (known) m = known;
      else this.byTarget.set(target, (m = this.children(target.key)));
    }
    const cls = Math.min(Math.max(Math.floor(status / 100), 1), 5) - 1;
    (m.counters[cls] as FunctionMetrics["counters"][number]).inc();
    m.duration.observe((performance.now() - startedAt) / 1000);
  }

  private children(fn: string): FunctionMetrics {
    return {
      counters: CLASSES.map((c) => this.requests.labels(fn, c)),
      duration: this.duration.labels(fn),
    };
  }
}
