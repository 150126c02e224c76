import {
  STATS_BUCKET_SECONDS,
  STATS_BUCKETS,
  STATS_LATENCY_BOUNDS_MS,
  type GatewayStatsReply,
  type StatsBucket,
} from "@fizz/events";

/** One slice of a function's history as the console draws it (merged over every gateway). */
export interface StatsPoint {
  /** Start of the slice, ms since the epoch. */
  t: number;
  count: number;
  errors: number;
  /** Answers per second over the slice. */
  rps: number;
  /** Latency percentiles in ms; null when the slice has no answers. */
  p50: number | null;
  p99: number | null;
}

export interface FunctionStats {
  bucketSeconds: number;
  /** Gateways whose answer went into the merge. */
  gateways: string[];
  points: StatsPoint[];
}

const SLOTS = STATS_LATENCY_BOUNDS_MS.length + 1;

/**
 * Sums the buckets of one function across gateways by slice start. A gateway's histogram of the
 * wrong length (another version's bounds) cannot be added bucket by bucket: its counts still
 * count, its latencies are left out rather than put under the wrong bounds.
 */
export function mergeBuckets(lists: readonly (readonly StatsBucket[])[]): StatsBucket[] {
  const byT = new Map<number, StatsBucket>();
  for (const buckets of lists) {
    for (const b of buckets) {
      let m = byT.get(b.t);
      if (!m) {
        m = { t: b.t, count: 0, errors: 0, latency: new Array<number>(SLOTS).fill(0) };
        byT.set(b.t, m);
      }
      m.count += b.count;
      m.errors += b.errors;
      if (b.latency.length === SLOTS)
        for (let i = 0; i < SLOTS; i++) m.latency[i] = (m.latency[i] ?? 0) + (b.latency[i] ?? 0);
    }
  }
  return [...byT.values()].sort((a, b) => a.t - b.t);
}

/**
 * The q-quantile (0 < q <= 1) of a histogram with STATS_LATENCY_BOUNDS_MS upper bounds, linearly
 * interpolated inside the bucket it falls in (as Prometheus' histogram_quantile does). Past the
 * last bound there is no upper edge to interpolate to: the answer is the last bound ("at least").
 */
export function quantile(latency: readonly number[], q: number): number | null {
  const total = latency.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < latency.length; i++) {
    const n = latency[i] ?? 0;
    if (n > 0 && below + n >= rank) {
      const upper = STATS_LATENCY_BOUNDS_MS[i];
      const last = STATS_LATENCY_BOUNDS_MS[STATS_LATENCY_BOUNDS_MS.length - 1]!;
      if (upper === undefined) return last;
      const lower = i === 0 ? 0 : STATS_LATENCY_BOUNDS_MS[i - 1]!;
      return lower + (upper - lower) * ((rank - below) / n);
    }
    below += n;
  }
  return STATS_LATENCY_BOUNDS_MS[STATS_LATENCY_BOUNDS_MS.length - 1]!;
}

/**
 * What the console's charts show for one function: every slice of the last hour (empty slices
 * included, so a quiet minute draws as zero instead of a line across it), oldest first.
 */
export function functionStats(
  replies: readonly GatewayStatsReply[],
  namespace: string,
  name: string,
  now: number,
): FunctionStats {
  const width = STATS_BUCKET_SECONDS * 1000;
  const lists = replies.map(
    (r) => r.functions.find((f) => f.namespace === namespace && f.name === name)?.buckets ?? [],
  );
  const merged = new Map(mergeBuckets(lists).map((b) => [b.t, b]));
  const last = Math.floor(now / width) * width;
  const points: StatsPoint[] = [];
  for (let i = STATS_BUCKETS - 1; i >= 0; i--) {
    const t = last - i * width;
    const b = merged.get(t);
    points.push({
      t,
      count: b?.count ?? 0,
      errors: b?.errors ?? 0,
      rps: (b?.count ?? 0) / STATS_BUCKET_SECONDS,
      p50: b ? round(quantile(b.latency, 0.5)) : null,
      p99: b ? round(quantile(b.latency, 0.99)) : null,
    });
  }
  return {
    bucketSeconds: STATS_BUCKET_SECONDS,
    gateways: replies.map((r) => r.gateway).sort(),
    points,
  };
}

function round(v: number | null): number | null {
  return v === null ? null : Math.round(v * 100) / 100;
}
