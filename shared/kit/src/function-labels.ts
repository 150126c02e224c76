import type { Counter, Gauge, Histogram } from "prom-client";

type Metric = Counter<string> | Gauge<string> | Histogram<string>;
type Labels = Record<string, string>;

/** Label value of every function past the cap. */
export const OTHER_FUNCTION = "_other";

/**
 * Bounded per-function labels for prom-client metrics (`namespace`, `function`): the first
 * `max` distinct functions get their own series, later ones share namespace="_other",
 * function="_other". Every label set handed out is remembered per function, so `forget` (the
 * function was deleted) removes exactly its series and frees its place under the cap.
 */
export class FunctionLabels {
  private readonly used = new Map<string, Map<string, { metric: Metric; labels: Labels }>>();
  private readonly ids = new Map<Metric, number>();

  constructor(readonly max: number) {}

  /** The labels for one series of `metric`: the function's (or `_other`) plus `extra`. */
  of(metric: Metric, namespace: string, name: string, extra: Labels = {}): Labels {
    const key = `${namespace}/${name}`;
    let series = this.used.get(key);
    if (series === undefined) {
      if (this.used.size >= this.max)
        return { namespace: OTHER_FUNCTION, function: OTHER_FUNCTION, ...extra };
      this.used.set(key, (series = new Map<string, { metric: Metric; labels: Labels }>()));
    }
    const labels = { namespace, function: name, ...extra };
    let n = this.ids.get(metric);
    if (n === undefined) this.ids.set(metric, (n = this.ids.size));
    const id = `${n} ${JSON.stringify(extra)}`;
    if (!series.has(id)) series.set(id, { metric, labels });
    return labels;
  }

  /** Removes every series of the function; `_other` keeps what it counted. */
  forget(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    for (const { metric, labels } of this.used.get(key)?.values() ?? []) metric.remove(labels);
    this.used.delete(key);
  }

  get size(): number {
    return this.used.size;
  }
}
