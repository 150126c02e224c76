import { Counter, type Registry } from "prom-client";

export interface LogMetrics {
  /** Lines of a specialized instance refused by its budget; labels bounded by the functions deployed. */
  dropped: Counter<"namespace" | "function">;
}

/** On the poolkeeper's registry (src/metrics.ts), from here so log capture stays in one folder. */
export function createLogMetrics(registry: Registry): LogMetrics {
  return {
    dropped: new Counter({
      name: "fizz_function_log_lines_dropped_total",
      help: "Function output lines dropped by the per-instance log budget",
      labelNames: ["namespace", "function"],
      registers: [registry],
    }),
  };
}
