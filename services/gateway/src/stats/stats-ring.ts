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

/** Slots per block: 5 minutes of history, ~2.3 KiB. */
const BLOCK = 30;
const BLOCKS = Math.ceil(STATS_BUCKETS / BLOCK);

/**
 * One function's last hour for `gateway.stats`: STATS_BUCKETS slices of STATS_BUCKET_SECONDS,
 * each with answers, errors (5xx, or no answer at all: status 0) and latency counts per
 * STATS_LATENCY_BOUNDS_MS bound. The slot is the bucket number modulo STATS_BUCKETS, so recording
 * is a division and a few increments; a slot still holding an older bucket is cleared on reuse.
 * Slots live in blocks of BLOCK rows allocated on first use: a function called once costs one
 * block, a busy one ~28 KiB for the hour (a typed array per row cost ~93 KiB, 186 MB for the
 * default 2000 functions), and no request allocates after the first hour.
 */
export class StatsRing {
  private readonly blocks: (Uint32Array | undefined)[] = new Array<Uint32Array | undefined>(
    BLOCKS,
  ).fill(undefined);

  record(nowMs: number, status: number, ms: number): void {
    const epoch = Math.floor(nowMs / BUCKET_MS);
    const slot = epoch % STATS_BUCKETS;
    const b = (slot / BLOCK) | 0;
    const block = (this.blocks[b] ??= new Uint32Array(BLOCK * WIDTH));
    const at = (slot - b * BLOCK) * WIDTH;
    if (block[at + EPOCH] !== epoch) {
      block.fill(0, at, at + WIDTH);
      block[at + EPOCH] = epoch;
    }
    block[at + COUNT]!++;
    if (status >= 500 || status === 0) block[at + ERRORS]!++;
    let i = 0;
    while (i < STATS_LATENCY_BOUNDS_MS.length && ms > STATS_LATENCY_BOUNDS_MS[i]!) i++;
    block[at + LATENCY + i]!++;
  }

  /** Every used row, as a view into its block (a row never used has count 0). */
  private *rows(): Generator<Uint32Array> {
    for (const block of this.blocks) {
      if (block === undefined) continue;
      for (let at = 0; at < block.length; at += WIDTH) yield block.subarray(at, at + WIDTH);
    }
  }

  /**
   * The buckets of the last hour that saw a call, oldest first. `latency[i]` counts calls that
   * took at most bound i and more than bound i-1 (not cumulative); the last entry, longer ones.
   */
  buckets(nowMs: number): StatsBucket[] {
    const current = Math.floor(nowMs / BUCKET_MS);
    const out: StatsBucket[] = [];
    for (const row of this.rows()) {
      if (!inHour(row, current)) continue;
      out.push({
        t: row[EPOCH]! * BUCKET_MS,
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
    for (const row of this.rows()) if (inHour(row, current)) return true;
    return false;
  }
}

function inHour(row: Uint32Array, current: number): boolean {
  const epoch = row[EPOCH]!;
  return row[COUNT]! > 0 && epoch <= current && epoch > current - STATS_BUCKETS;
}
