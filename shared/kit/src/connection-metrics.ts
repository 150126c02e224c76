import { Gauge, type MetricType, type Registry } from "prom-client";

/**
 * NATS and Redis connection state of this process, for every service's /metrics: connectNats and
 * connectRedis report into it (`trackConnection`), createMetricsRegistry exposes it
 * (`registerConnectionMetrics`). Kept per process, not per registry, because connections are made
 * before and apart from the registry; a service is one process.
 *
 * `fizz_<kind>_connected` is 1 while every open connection of that kind is connected, 0 while one
 * is not. A process that never opened one (the poolkeeper has no Redis) exports no series for it,
 * so "== 0 for 1m" alerts only where the connection exists.
 */
export type ConnectionKind = "nats" | "redis";

interface KindState {
  /** Open connections and whether each is connected now. */
  readonly open: Map<object, boolean>;
  disconnects: number;
  reconnects: number;
}

const states: Record<ConnectionKind, KindState> = {
  nats: { open: new Map(), disconnects: 0, reconnects: 0 },
  redis: { open: new Map(), disconnects: 0, reconnects: 0 },
};

export interface ConnectionTracker {
  /** Connected (the first time, or again after a loss: then counted as a reconnect). */
  up(): void;
  /** Lost; the client is trying again. */
  down(): void;
  /** Closed on purpose: no longer counted. */
  closed(): void;
}

/** Starts tracking one connection, not connected yet. */
export function trackConnection(kind: ConnectionKind): ConnectionTracker {
  const s = states[kind];
  const key = {};
  let everUp = false;
  s.open.set(key, false);
  return {
    up() {
      if (!s.open.has(key) || s.open.get(key) === true) return;
      if (everUp) s.reconnects++;
      everUp = true;
      s.open.set(key, true);
    },
    down() {
      if (s.open.get(key) !== true) return;
      s.disconnects++;
      s.open.set(key, false);
    },
    closed() {
      s.open.delete(key);
    },
  };
}

type Reading = (s: KindState) => number | undefined;

/**
 * A series computed at scrape time from the process state; no series at all while `read` says
 * undefined (prom-client prints an unset unlabelled gauge as 0, which would look like an outage).
 */
class ProcessSeries extends Gauge {
  constructor(
    private readonly meta: { name: string; help: string; type: "gauge" | "counter" },
    registry: Registry,
    private readonly read: () => number | undefined,
  ) {
    super({ name: meta.name, help: meta.help, registers: [registry] });
  }

  override get(): ReturnType<Gauge["get"]> {
    return this.snapshot();
  }

  getForPromString(): ReturnType<Gauge["get"]> {
    return this.snapshot();
  }

  private snapshot(): ReturnType<Gauge["get"]> {
    const v = this.read();
    return Promise.resolve({
      name: this.meta.name,
      help: this.meta.help,
      // prom-client's runtime type names are strings; its typings declare a numeric enum.
      type: this.meta.type as unknown as MetricType,
      aggregator: "sum",
      values: v === undefined ? [] : [{ value: v, labels: {} }],
      collect: () => undefined,
    });
  }
}

const SERIES: { suffix: string; help: string; type: "gauge" | "counter"; read: Reading }[] = [
  {
    suffix: "connected",
    help: "1 while every connection of this process is connected, 0 while one is not",
    type: "gauge",
    read: (s) => (s.open.size === 0 ? undefined : [...s.open.values()].every(Boolean) ? 1 : 0),
  },
  {
    suffix: "disconnects_total",
    help: "Connections lost (each followed by reconnect attempts)",
    type: "counter",
    read: (s) => (s.open.size === 0 && s.disconnects === 0 ? undefined : s.disconnects),
  },
  {
    suffix: "reconnects_total",
    help: "Connections established again after a loss",
    type: "counter",
    read: (s) => (s.open.size === 0 && s.reconnects === 0 ? undefined : s.reconnects),
  },
];

/** fizz_nats_* and fizz_redis_* (connected, disconnects_total, reconnects_total). */
export function registerConnectionMetrics(registry: Registry): void {
  for (const kind of ["nats", "redis"] as const) {
    const label = kind === "nats" ? "NATS" : "Redis";
    for (const m of SERIES)
      new ProcessSeries(
        { name: `fizz_${kind}_${m.suffix}`, help: `${label}: ${m.help}`, type: m.type },
        registry,
        () => m.read(states[kind]),
      );
  }
}
