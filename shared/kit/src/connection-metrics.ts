import { Gauge, type MetricType, type Registry } from "prom-client";

/**
 * NATS and Redis connection state of this process, for every service's /metrics: connectNats and
 * connectRedis report into it (`trackConnection`), createMetricsRegistry exposes it
 * (`registerConnectionMetrics`). Kept per process, not per registry, because connections are made
 * before and apart from the registry; a service is one process.
 *
 * One series per open connection, labelled `connection` with the client's name (the service's
 * NATS client name, the Redis connection name): `fizz_<kind>_connected` is 1 while it is
 * connected, 0 while it is not. A connection closed on purpose loses its series, so a process
 * without such a connection (the poolkeeper has no Redis) exports none and "== 0 for 1m" alerts
 * only where a connection really is down.
 */
export type ConnectionKind = "nats" | "redis";

interface Connection {
  readonly name: string;
  connected: boolean;
  disconnects: number;
  reconnects: number;
}

const open: Record<ConnectionKind, Set<Connection>> = { nats: new Set(), redis: new Set() };

export interface ConnectionTracker {
  /** Connected (the first time, or again after a loss: then counted as a reconnect). */
  up(): void;
  /** Lost; the client is trying again. */
  down(): void;
  /** Closed on purpose: its series go. */
  closed(): void;
}

/** Starts tracking one connection, not connected yet. */
export function trackConnection(kind: ConnectionKind, name: string): ConnectionTracker {
  // Two open connections of one name (a second client of a service) must not make one series.
  const taken = new Set([...open[kind]].map((o) => o.name));
  let unique = name;
  for (let n = 2; taken.has(unique); n++) unique = `${name}#${n}`;
  const c: Connection = { name: unique, connected: false, disconnects: 0, reconnects: 0 };
  let everUp = false;
  open[kind].add(c);
  return {
    up() {
      if (c.connected) return;
      if (everUp) c.reconnects++;
      everUp = true;
      c.connected = true;
    },
    down() {
      if (!c.connected) return;
      c.disconnects++;
      c.connected = false;
    },
    closed() {
      open[kind].delete(c);
    },
  };
}

/** A series per open connection, computed at scrape time from the process state. */
class ConnectionSeries extends Gauge<"connection"> {
  constructor(
    private readonly meta: { name: string; help: string; type: "gauge" | "counter" },
    registry: Registry,
    private readonly read: () => Iterable<[connection: string, value: number]>,
  ) {
    super({ name: meta.name, help: meta.help, labelNames: ["connection"], registers: [registry] });
  }

  override get(): ReturnType<Gauge<"connection">["get"]> {
    return this.snapshot();
  }

  getForPromString(): ReturnType<Gauge<"connection">["get"]> {
    return this.snapshot();
  }

  private snapshot(): ReturnType<Gauge<"connection">["get"]> {
    const values = [...this.read()].map(([connection, value]) => ({
      value,
      labels: { connection },
    }));
    return Promise.resolve({
      name: this.meta.name,
      help: this.meta.help,
      // prom-client's runtime type names are strings; its typings declare a numeric enum.
      type: this.meta.type as unknown as MetricType,
      aggregator: "sum",
      values,
      collect: () => undefined,
    });
  }
}

const SERIES: {
  suffix: string;
  help: string;
  type: "gauge" | "counter";
  read: (c: Connection) => number;
}[] = [
  {
    suffix: "connected",
    help: "1 while the connection is up, 0 while the client is reconnecting",
    type: "gauge",
    read: (c) => (c.connected ? 1 : 0),
  },
  {
    suffix: "disconnects_total",
    help: "Times the connection was lost (each followed by reconnect attempts)",
    type: "counter",
    read: (c) => c.disconnects,
  },
  {
    suffix: "reconnects_total",
    help: "Times the connection was established again after a loss",
    type: "counter",
    read: (c) => c.reconnects,
  },
];

/** fizz_nats_* and fizz_redis_* (connected, disconnects_total, reconnects_total). */
export function registerConnectionMetrics(registry: Registry): void {
  for (const kind of ["nats", "redis"] as const) {
    const label = kind === "nats" ? "NATS" : "Redis";
    for (const m of SERIES)
      new ConnectionSeries(
        { name: `fizz_${kind}_${m.suffix}`, help: `${label}: ${m.help}`, type: m.type },
        registry,
        function* () {
          for (const c of open[kind]) yield [c.name, m.read(c)];
        },
      );
  }
}
