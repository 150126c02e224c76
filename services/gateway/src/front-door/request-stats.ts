import { Histogram, type MetricType, type Registry } from "prom-client";

/**
 * Per-function request counts and durations, kept as plain numbers on the hot path and turned
 * into Prometheus series only when scraped. A prom-client `observe`/`inc` per request (label
 * validation, closures, hashing) cost about a microsecond, a few percent of the whole proxied
 * request; this costs a few array increments.
 */
export const DURATION_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
] as const;
export const STATUS_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const;

export class RequestStats {
  /** Answers per status class, 1xx..5xx. */
  readonly classes = new Float64Array(STATUS_CLASSES.length);
  /** Observations per bucket (not cumulative); the last slot is above the largest bound. */
  readonly buckets = new Float64Array(DURATION_BUCKETS.length + 1);
  sum = 0;
  count = 0;
  /** The function was deleted and these numbers dropped: the holder attaches fresh ones. */
  retired = false;

  /** `_at`: when it ended (performance.now()), for subclasses that keep history. */
  record(status: number, seconds: number, _at?: number): void {
    const cls = status < 200 ? 0 : status < 300 ? 1 : status < 400 ? 2 : status < 500 ? 3 : 4;
    this.classes[cls]!++;
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
    this.buckets[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

type Labels = Record<string, string>;
type Series = Iterable<[labels: Labels, stats: RequestStats]>;

/**
 * A prom-client Histogram whose series come from RequestStats at scrape time (it is registered
 * like any histogram, so the ops server and the registry need nothing special).
 */
export class StatsHistogram extends Histogram<string> {
  constructor(
    private readonly meta: { name: string; help: string; labelNames: readonly string[] },
    registry: Registry,
    private readonly series: () => Series,
  ) {
    super({
      name: meta.name,
      help: meta.help,
      labelNames: [...meta.labelNames],
      buckets: [...DURATION_BUCKETS],
      registers: [registry],
    });
  }

  override get(): ReturnType<Histogram<string>["get"]> {
    return this.snapshot();
  }

  /** What the registry renders the text exposition from (prom-client prefers it over get()). */
  getForPromString(): ReturnType<Histogram<string>["get"]> {
    return this.snapshot();
  }

  private snapshot(): ReturnType<Histogram<string>["get"]> {
    const { name, help } = this.meta;
    const values: { value: number; labels: Record<string, string | number>; metricName: string }[] =
      [];
    for (const [labels, s] of this.series()) {
      let acc = 0;
      DURATION_BUCKETS.forEach((le, i) => {
        acc += s.buckets[i]!;
        values.push({ value: acc, labels: { ...labels, le }, metricName: `${name}_bucket` });
      });
      values.push({
        value: s.count,
        labels: { ...labels, le: "+Inf" },
        metricName: `${name}_bucket`,
      });
      values.push({ value: s.sum, labels, metricName: `${name}_sum` });
      values.push({ value: s.count, labels, metricName: `${name}_count` });
    }
    // prom-client's runtime type names are strings; its typings declare a numeric enum.
    const type = "histogram" as unknown as MetricType;
    return Promise.resolve({
      name,
      help,
      type,
      aggregator: "sum",
      values,
      collect: () => undefined,
    });
  }
}
