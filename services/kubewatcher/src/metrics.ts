import { createMetricsRegistry } from "@fizz/kit";
import { Counter, Gauge, type Registry } from "prom-client";
import type { WatchState } from "./key-watch";

export interface Metrics {
  registry: Registry;
  invocations: Counter<"type">;
  publishRetries: Counter;
  resyncs: Counter;
}

const STATES: WatchState[] = [
  "standby",
  "resolving",
  "syncing",
  "watching",
  "retrying",
  "failed",
  "refused",
];

/** Gauges read the live state at scrape time, so they cannot drift from it. */
export function createMetrics(view: {
  leader: () => boolean;
  informers: () => number;
  triggerStates: () => WatchState[];
}): Metrics {
  const registry = createMetricsRegistry("kubewatcher");
  new Gauge({
    name: "fizz_kubewatcher_leader",
    help: "1 while this replica is the leader (runs the informers)",
    registers: [registry],
    collect() {
      this.set(view.leader() ? 1 : 0);
    },
  });
  new Gauge({
    name: "fizz_kubewatcher_informers",
    help: "Distinct (resource, namespace, labels, fields) watched",
    registers: [registry],
    collect() {
      this.set(view.informers());
    },
  });
  new Gauge({
    name: "fizz_kubewatcher_triggers",
    help: "Watch triggers by state",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      const states = view.triggerStates();
      for (const s of STATES) this.set({ state: s }, states.filter((x) => x === s).length);
    },
  });
  return {
    registry,
    invocations: new Counter({
      name: "fizz_kubewatcher_invocations_total",
      help: "Invocations published (acknowledged by JetStream) by Kubernetes event type",
      labelNames: ["type"],
      registers: [registry],
    }),
    publishRetries: new Counter({
      name: "fizz_kubewatcher_publish_retries_total",
      help: "Failed publish attempts, each retried",
      registers: [registry],
    }),
    resyncs: new Counter({
      name: "fizz_kubewatcher_resyncs_total",
      help: "Relists after 410 Gone, each delivering the differences with the snapshot",
      registers: [registry],
    }),
  };
}
