import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { BusTrigger, FunctionStatsTable } from "../stats/function-stats";

/** The function a bus call was for (an Invocation, or a message-queue trigger's target). */
interface Called {
  readonly namespace: string;
  readonly function: string;
}

/**
 * Metrics of the bus side. `source` is the invocation's (`async`, `timer`, `watch`, `mqt`) or the
 * mq trigger mode (`mqt-core`, `mqt-jetstream`). Outcomes:
 * `succeeded` (answered < 400), `failed` (answered 4xx, or a core mq trigger call that failed),
 * `retried` (a failed attempt, NAKed with back-off), `dead_lettered`, `deferred` (back to the
 * stream for capacity, not an attempt), `duplicate` (a redelivery of a finished call, acked),
 * `handed_back` (NAKed at stop or on a store error), `malformed`, `rejected` (core mq trigger over
 * its waiting limit).
 *
 * Per function (FunctionStatsTable, series `fizz_function_*` at scrape time): every attempt's
 * answer (`attempt`), retries and dead letters (`invocation` given the function).
 */
export class BusMetrics {
  private readonly invocations: Counter<"source" | "outcome">;
  private readonly duration: Histogram<"source">;
  readonly callbacks: Counter<"outcome">;
  readonly asyncRequests: Counter<"outcome">;

  constructor(
    registry: Registry,
    inFlight: () => number,
    waiting: () => number,
    private readonly functions?: FunctionStatsTable,
  ) {
    this.invocations = new Counter({
      name: "fizz_gateway_bus_invocations_total",
      help: "Bus-originated calls handled by this gateway, by source and outcome",
      labelNames: ["source", "outcome"],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: "fizz_gateway_bus_call_duration_seconds",
      help: "Duration of the function call of completed bus-originated calls, by source",
      labelNames: ["source"],
      buckets: [0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120],
      registers: [registry],
    });
    this.callbacks = new Counter({
      name: "fizz_gateway_async_callbacks_total",
      help: "Results POSTed to X-Callback-Url, by outcome (delivered, failed)",
      labelNames: ["outcome"],
      registers: [registry],
    });
    this.asyncRequests = new Counter({
      name: "fizz_gateway_async_requests_total",
      help: "Requests to /async-function/, by outcome (accepted, status, not_found, refused, unavailable)",
      labelNames: ["outcome"],
      registers: [registry],
    });
    new Gauge({
      name: "fizz_gateway_bus_inflight",
      help: "Bus-originated calls running on this gateway",
      registers: [registry],
      collect() {
        this.set(inFlight());
      },
    });
    new Gauge({
      name: "fizz_gateway_bus_waiting",
      help: "Bus-originated calls waiting for a slot of FIZZ_INVOKER_MAX_INFLIGHT or their function's bus share",
      registers: [registry],
      collect() {
        this.set(waiting());
      },
    });
  }

  invocation(source: string, outcome: string, fn?: Called): void {
    this.invocations.labels(source, outcome).inc();
    if (fn === undefined || (outcome !== "retried" && outcome !== "dead_lettered")) return;
    const s = this.functions?.of(fn.namespace, fn.function).busStats(triggerOf(source));
    if (s === undefined) return;
    if (outcome === "retried") s.retries++;
    else s.deadLetters++;
  }

  /** One call of the function (each attempt), with its answer or the error's status. */
  attempt(fn: Called, source: string, answer: { status: number; durationMs: number }): void {
    this.functions
      ?.of(fn.namespace, fn.function)
      .recordBus(triggerOf(source), answer.status, answer.durationMs / 1000);
  }

  observe(source: string, durationMs: number): void {
    this.duration.labels(source).observe(durationMs / 1000);
  }
}

function triggerOf(source: string): BusTrigger {
  return source === "async" || source === "timer" || source === "watch" ? source : "mqt";
}
