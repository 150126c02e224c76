import {
  STATS_BUCKETS,
  STATS_BUCKET_SECONDS,
  STATS_LATENCY_BOUNDS_MS,
  type StatsBucket,
} from "@fizz/events";

const BUCKET_MS = STATS_BUCKET_SECONDS * 1000;
/** Row layout: bucket number (epoch / BUCKET_MS), count, errors, then latency counts. */
const EPOCH = 0;
const COUNT = 1;
const ERRORS = 2;
const LATENCY = 3;
const WIDTH = LATENCY + STATS_LATENCY_BOUNDS_MS.length + 1;

/**
 * One function's last hour for `gateway.stats`: STATS_BUCKETS slices of STATS_BUCKET_SECONDS,
 * each with answers, errors (5xx, or no answer at all: status 0) and latency counts per
 * STATS_LATENCY_BOUNDS_MS bound. The slot is the bucket number modulo STATS_BUCKETS, so recording
 * is a division and a few increments; a slot still holding an older bucket is cleared on reuse.
 * Rows are allocated the first time their slot is used (at most STATS_BUCKETS per function, ever),
 * so a function called once costs one row, not an hour's worth, and no request allocates after
 * the first hour.
 */
export class StatsRing {
  private readonly rows: (Uint32Array | undefined)[] = new Array<Uint32Array | undefined>(
    STATS_BUCKETS,
  ).fill(undefined);

  record(nowMs: number, status: number, ms: number): void {
    const epoch = Math.floor(nowMs / BUCKET_MS);
    const slot = epoch % STATS_BUCKETS;
    let row = this.rows[slot];
    if (row === undefined) {
      row = this.rows[slot] = new Uint32Array(WIDTH);
      row[EPOCH] = epoch;
    } else if (row[EPOCH] !== epoch) {
      row.fill(0);
      row[EPOCH] = epoch;
    }
    row[COUNT]!++;
    if (status >= 500 || status === 0) row[ERRORS]!++;
    let i = 0;
    while (i < STATS_LATENCY_BOUNDS_MS.length && ms > STATS_LATENCY_BOUNDS_MS[i]!) i++;
    row[LATENCY + i]!++;
  }

  /**
   * The buckets of the last hour that saw a call, oldest first. `latency[i]` counts calls that
   * took at most bound i and more than bound i-1 (not cumulative); the last entry, longer ones.
   */
  buckets(nowMs: number): StatsBucket[] {
    const current = Math.floor(nowMs / BUCKET_MS);
    const out: StatsBucket[] = [];
    for (const row of this.rows) {
      if (row === undefined || row[COUNT] === 0) continue;
      const epoch = row[EPOCH]!;
      if (epoch > current || epoch <= current - STATS_BUCKETS) continue;
      out.push({
        t: epoch * BUCKET_MS,
        count: row[COUNT]!,
        errors: row[ERRORS]!,
        latency: Array.from(row.subarray(LATENCY)),
      });
    }
    return out.sort((a, b) => a.t - b.t);
  }

  /** Whether any call was recorded in the last hour. */
  active(nowMs: number): boolean {
    const current = Math.floor(nowMs / BUCKET_MS);
    return this.rows.some(
      (row) =>
        row !== undefined &&
        row[COUNT]! > 0 &&
        row[EPOCH]! <= current &&
        row[EPOCH]! > current - STATS_BUCKETS,
    );
  }
}
