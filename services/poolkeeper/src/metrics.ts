import { Codecs, type Subjects } from "@fizz/events";
import {
  createMetricsRegistry,
  FunctionLabels,
  listen,
  type Logger,
  type NatsConnection,
  type Subscription,
} from "@fizz/kit";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { INSTANCE_STATES, type InstanceCounts, type Tracked } from "./instances";

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

const SPECIALIZE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface Metrics {
  registry: Registry;
  specializations: Counter<"outcome">;
  /** `start` is warm (taken from the pool) or cold (spawned for the request). */
  specializeSeconds: Histogram<"outcome" | "start">;
  spawnSeconds: Histogram<"outcome">;
  /** The instances per function, read at scrape time (the pool's list). */
  instances: () => Iterable<Pick<Tracked, "function" | "state" | "killing">>;
  /** Spawns waiting at the gate, read at scrape time (the pool's spawnQueue). */
  spawnQueue: () => { taken: number; warm: number };
  /** One specialize request answered, for the per-function series. */
  functionSpecialized(
    fn: { namespace: string; name: string },
    outcome: SpecializeOutcomeLabel,
    start: "warm" | "cold" | "none",
    seconds: number,
  ): void;
  /** The function was deleted: its series go. */
  forgetFunction(namespace: string, name: string): void;
}

/** The instance gauges read the pool at scrape time, so they can never drift from the truth. */
export function createMetrics(counts: () => InstanceCounts, maxFunctions = 2000): Metrics {
  const registry = createMetricsRegistry("poolkeeper");
  const labels = new FunctionLabels(maxFunctions);
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
  const coldStarts = new Counter({
    name: "fizz_function_cold_starts_total",
    help: "Instances specialized for a function (for a waiting request, or minInstances), by start: warm (from the pool) or cold (spawned)",
    labelNames: ["namespace", "function", "start"],
    registers: [registry],
  });
  const specializeFailures = new Counter({
    name: "fizz_function_specialize_failures_total",
    help: "Specialize requests for a function that failed, by outcome",
    labelNames: ["namespace", "function", "outcome"],
    registers: [registry],
  });
  const specializeDuration = new Histogram({
    name: "fizz_function_specialize_duration_seconds",
    help: "Time to specialize an instance for a function (successful ones), by start",
    labelNames: ["namespace", "function", "start"],
    buckets: SPECIALIZE_BUCKETS,
    registers: [registry],
  });
  const m: Metrics = {
    registry,
    instances: () => [],
    spawnQueue: () => ({ taken: 0, warm: 0 }),
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
      buckets: SPECIALIZE_BUCKETS,
      registers: [registry],
    }),
    spawnSeconds: new Histogram({
      name: "fizz_poolkeeper_spawn_duration_seconds",
      help: "Time from spawn until the instance answers /healthz",
      labelNames: ["outcome"],
      buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    functionSpecialized(fn, outcome, start, seconds) {
      if (outcome !== "ok") {
        specializeFailures.inc(labels.of(specializeFailures, fn.namespace, fn.name, { outcome }));
        return;
      }
      coldStarts.inc(labels.of(coldStarts, fn.namespace, fn.name, { start }));
      specializeDuration.observe(
        labels.of(specializeDuration, fn.namespace, fn.name, { start }),
        seconds,
      );
    },
    forgetFunction: (namespace, name) => labels.forget(namespace, name),
  };
  new Gauge({
    name: "fizz_poolkeeper_spawn_queue",
    help: "Spawns waiting for a slot (FIZZ_SPAWN_CONCURRENCY), by kind: cold (a request waits) or refill",
    labelNames: ["kind"],
    registers: [registry],
    collect() {
      const q = m.spawnQueue();
      this.set({ kind: "cold" }, q.taken);
      this.set({ kind: "refill" }, q.warm);
    },
  });
  new Gauge({
    name: "fizz_function_instances",
    help: "Instances of a function on this poolkeeper, by state (specializing, specialized)",
    labelNames: ["namespace", "function", "state"],
    registers: [registry],
    collect() {
      // Bounded by the instances themselves (no cap needed); rebuilt each scrape, so a deleted
      // function's series go with its last instance.
      this.reset();
      const sums = new Map<string, { labels: Record<string, string>; n: number }>();
      for (const t of m.instances()) {
        if (t.function === undefined || t.killing || t.state === "warm") continue;
        const fn = { namespace: t.function.namespace, function: t.function.name };
        const key = `${fn.namespace}/${fn.function}/${t.state}`;
        const e = sums.get(key) ?? { labels: { ...fn, state: t.state }, n: 0 };
        e.n++;
        sums.set(key, e);
      }
      for (const e of sums.values()) this.set(e.labels, e.n);
    },
  });
  return m;
}

/** Forgets a deleted function's series when the registry says so. */
export function forgetDeletedFunctions(
  nc: NatsConnection,
  subjects: Subjects,
  metrics: Metrics,
  logger: Logger,
): Subscription {
  return listen(
    nc,
    subjects.registryChanged("functions"),
    Codecs.registryChanged,
    (ev) => {
      if (ev.op === "deleted") metrics.forgetFunction(ev.namespace, ev.name);
    },
    { logger },
  );
}
