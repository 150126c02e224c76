import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { InstanceTable } from "./instance-table";

export interface SchedulerMetrics {
  /** outcome: existing | specialized | joined | topUp | an error code. */
  leases: Counter<"outcome">;
  leaseDuration: Histogram<"outcome">;
}

export function createSchedulerMetrics(
  registry: Registry,
  sources: { table: InstanceTable; specializationsInFlight: () => number },
): SchedulerMetrics {
  const leases = new Counter({
    name: "fizz_scheduler_leases_total",
    help: "Lease requests answered, by outcome",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const leaseDuration = new Histogram({
    name: "fizz_scheduler_lease_duration_seconds",
    help: "Time to answer a lease request (specializations included)",
    labelNames: ["outcome"],
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
    registers: [registry],
  });
  new Gauge({
    name: "fizz_scheduler_specializations_in_flight",
    help: "Specializations requested from the poolkeeper and not answered yet",
    registers: [registry],
    collect() {
      this.set(sources.specializationsInFlight());
    },
  });
  new Gauge({
    name: "fizz_scheduler_instances",
    help: "Specialized instances known to this scheduler, by state",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      let draining = 0;
      for (const t of sources.table.all()) if (t.draining) draining++;
      this.set({ state: "active" }, sources.table.size - draining);
      this.set({ state: "draining" }, draining);
    },
  });
  return { leases, leaseDuration };
}
