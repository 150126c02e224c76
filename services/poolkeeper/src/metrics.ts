import { createMetricsRegistry } from "@fizz/kit";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { INSTANCE_STATES, type InstanceCounts } from "./instances";

export type SpecializeOutcomeLabel =
  | "ok"
  | "load_failed"
  | "instance_failed"
  | "code_missing"
  | "digest_mismatch"
  | "missing_config"
  | "unknown_environment"
  | "unsupported"
  | "error";

export interface Metrics {
  registry: Registry;
  specializations: Counter<"outcome">;
  /** `start` is warm (taken from the pool) or cold (spawned for the request). */
  specializeSeconds: Histogram<"outcome" | "start">;
  spawnSeconds: Histogram<"outcome">;
}

/** The instance gauge reads the pool at scrape time, so it can never drift from the truth. */
export function createMetrics(counts: () => InstanceCounts): Metrics {
  const registry = createMetricsRegistry("poolkeeper");
  new Gauge({
    name: "fizz_poolkeeper_instances",
    help: "Instances by state",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      const c = counts();
      for (const s of INSTANCE_STATES) this.set({ state: s }, c[s]);
    },
  });
  return {
    registry,
    specializations: new Counter({
      name: "fizz_poolkeeper_specializations_total",
      help: "Specialize requests by outcome",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    specializeSeconds: new Histogram({
      name: "fizz_poolkeeper_specialize_duration_seconds",
      help: "Time to answer a specialize request",
      labelNames: ["outcome", "start"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    spawnSeconds: new Histogram({
      name: "fizz_poolkeeper_spawn_duration_seconds",
      help: "Time from spawn until the instance answers /healthz",
      labelNames: ["outcome"],
      buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
  };
}
