import { Counter, Gauge, type Registry } from "prom-client";
import { STATUS_CLASSES, StatsHistogram } from "../front-door/request-stats";
import type { BusStats, FunctionStatsTable } from "./function-stats";

/** A function's requests waiting at its capacity limit (the front door's FunctionLeases). */
export interface FunctionQueue {
  readonly namespace: string;
  readonly name: string;
  readonly queue: { readonly length: number };
}

/**
 * The per-function series (`fizz_function_*`), built from the FunctionStatsTable at scrape time:
 * the hot path only increments numbers. Labels: namespace, function (both `_other` past the cap),
 * trigger (http, async, mqt, timer, watch) and status (the answer's class, 1xx..5xx).
 */
export function registerFunctionMetrics(
  registry: Registry,
  table: FunctionStatsTable,
  queues: () => Iterable<FunctionQueue>,
): void {
  new Counter({
    name: "fizz_function_invocations_total",
    help: "Calls of a function answered through this gateway, by trigger and status class",
    labelNames: ["namespace", "function", "trigger", "status"],
    registers: [registry],
    collect() {
      this.reset();
      for (const f of table.all())
        for (const [trigger, s] of f.triggers())
          STATUS_CLASSES.forEach((status, i) => {
            const n = s.classes[i] ?? 0;
            if (n > 0) this.inc({ namespace: f.namespace, function: f.name, trigger, status }, n);
          });
    },
  });
  new StatsHistogram(
    {
      name: "fizz_function_duration_seconds",
      help: "Time from a function call to its answer, by trigger",
      labelNames: ["namespace", "function", "trigger"],
    },
    registry,
    function* () {
      for (const f of table.all())
        for (const [trigger, s] of f.triggers())
          yield [{ namespace: f.namespace, function: f.name, trigger }, s];
    },
  );
  busCounter(
    registry,
    table,
    "fizz_function_retries_total",
    "Failed bus-originated attempts sent back for another try, by trigger",
    (s) => s.retries,
  );
  busCounter(
    registry,
    table,
    "fizz_function_dead_letters_total",
    "Bus-originated calls given up on and published to the dead-letter stream, by trigger",
    (s) => s.deadLetters,
  );
  new Gauge({
    name: "fizz_function_queued_requests",
    help: "Requests waiting for a slot of a function at its capacity limit",
    labelNames: ["namespace", "function"],
    registers: [registry],
    collect() {
      this.reset();
      // Every function with series shows its queue, 0 included, so a dashboard has a line to
      // draw and an alert a value to compare before the first request ever waits.
      const sums = new Map<string, { namespace: string; function: string; n: number }>();
      for (const s of table.all())
        sums.set(`${s.namespace}/${s.name}`, { namespace: s.namespace, function: s.name, n: 0 });
      for (const q of queues()) {
        if (q.queue.length === 0) continue;
        // Through the table, so a function past the cap is counted under `_other`.
        const s = table.of(q.namespace, q.name);
        const key = `${s.namespace}/${s.name}`;
        const e = sums.get(key) ?? { namespace: s.namespace, function: s.name, n: 0 };
        e.n += q.queue.length;
        sums.set(key, e);
      }
      for (const e of sums.values())
        this.set({ namespace: e.namespace, function: e.function }, e.n);
    },
  });
  new Gauge({
    name: "fizz_function_tracked",
    help: "Functions with their own series on this gateway (at the cap, others count as _other)",
    registers: [registry],
    collect() {
      this.set(table.size);
    },
  });
}

/** A per-function, per-bus-trigger counter read from BusStats at scrape time. */
function busCounter(
  registry: Registry,
  table: FunctionStatsTable,
  name: string,
  help: string,
  read: (s: BusStats) => number,
): void {
  new Counter({
    name,
    help,
    labelNames: ["namespace", "function", "trigger"],
    registers: [registry],
    collect() {
      this.reset();
      for (const f of table.all())
        for (const [trigger, s] of f.busTriggers()) {
          const n = read(s);
          if (n > 0) this.inc({ namespace: f.namespace, function: f.name, trigger }, n);
        }
    },
  });
}
