import { expect } from "chai";
import {
  STATS_BUCKET_SECONDS,
  STATS_BUCKETS,
  STATS_LATENCY_BOUNDS_MS,
  type GatewayStatsReply,
  type StatsBucket,
} from "@fizz/events";
import { functionStats, mergeBuckets, quantile } from "../src/console-stats";

const SLOTS = STATS_LATENCY_BOUNDS_MS.length + 1;
const W = STATS_BUCKET_SECONDS * 1000;
const NOW = 1_700_000_000_000 - (1_700_000_000_000 % W) + 3000;
const LAST = NOW - (NOW % W);

/** A histogram with `n` answers in the bucket whose upper bound is `boundMs` (or past the last). */
function hist(entries: [boundMs: number | "over", n: number][]): number[] {
  const h = new Array<number>(SLOTS).fill(0);
  for (const [b, n] of entries) {
    const i = b === "over" ? SLOTS - 1 : STATS_LATENCY_BOUNDS_MS.indexOf(b as never);
    if (i < 0) throw new Error(`no bound ${b}`);
    h[i] = (h[i] ?? 0) + n;
  }
  return h;
}

function bucket(t: number, count: number, errors: number, latency: number[]): StatsBucket {
  return { t, count, errors, latency };
}

function reply(gateway: string, buckets: StatsBucket[], name = "hello"): GatewayStatsReply {
  return { gateway, now: NOW, functions: [{ namespace: "default", name, buckets }] };
}

describe("console stats: merging gateways' histories", () => {
  it("adds counts, errors and latency histograms of equal slices across gateways", () => {
    const merged = mergeBuckets([
      [bucket(LAST, 3, 1, hist([[10, 3]]))],
      [bucket(LAST, 2, 0, hist([[100, 2]])), bucket(LAST - W, 1, 0, hist([[5, 1]]))],
    ]);
    expect(merged.map((b) => b.t)).to.deep.equal([LAST - W, LAST]);
    expect(merged[1]).to.deep.include({ count: 5, errors: 1 });
    expect(merged[1]!.latency).to.deep.equal(
      hist([
        [10, 3],
        [100, 2],
      ]),
    );
  });

  it("keeps the counts but not the latencies of a histogram with another set of bounds", () => {
    const merged = mergeBuckets([
      [bucket(LAST, 2, 0, hist([[10, 2]]))],
      [bucket(LAST, 4, 4, [4, 0, 0])],
    ]);
    expect(merged[0]).to.deep.include({ count: 6, errors: 4 });
    expect(merged[0]!.latency).to.deep.equal(hist([[10, 2]]));
  });
});

describe("console stats: percentiles from the merged histogram", () => {
  it("interpolates inside the bucket the rank falls in", () => {
    // 100 answers between 10 and 20 ms: the median sits halfway, p99 near the top.
    expect(quantile(hist([[20, 100]]), 0.5)).to.equal(15);
    expect(quantile(hist([[20, 100]]), 0.99)).to.be.closeTo(19.9, 1e-9);
  });

  it("finds p50 and p99 in different buckets of a skewed distribution", () => {
    // 90 fast (0-1 ms), 10 slow (500-1000 ms): p50 is fast, p99 is slow.
    const h = hist([
      [1, 90],
      [1000, 10],
    ]);
    expect(quantile(h, 0.5)).to.be.closeTo(50 / 90, 1e-9);
    expect(quantile(h, 0.99)).to.equal(500 + 500 * (9 / 10));
  });

  it("answers the last bound for answers slower than every bound, and null without answers", () => {
    const last = STATS_LATENCY_BOUNDS_MS[STATS_LATENCY_BOUNDS_MS.length - 1];
    expect(quantile(hist([["over", 3]]), 0.99)).to.equal(last);
    expect(quantile(hist([]), 0.5)).to.equal(null);
  });
});

describe("console stats: one function's last hour", () => {
  it("answers every slice of the hour, oldest first, zero where no gateway saw a request", () => {
    const s = functionStats(
      [
        reply("gw-b", [bucket(LAST, 20, 2, hist([[10, 20]]))]),
        reply("gw-a", [bucket(LAST, 10, 0, hist([[10, 10]]))]),
      ],
      "default",
      "hello",
      NOW,
    );
    expect(s.gateways).to.deep.equal(["gw-a", "gw-b"]);
    expect(s.bucketSeconds).to.equal(STATS_BUCKET_SECONDS);
    expect(s.points).to.have.length(STATS_BUCKETS);
    expect(s.points[0]!.t).to.equal(LAST - (STATS_BUCKETS - 1) * W);
    const last = s.points[STATS_BUCKETS - 1]!;
    expect(last).to.deep.equal({ t: LAST, count: 30, errors: 2, rps: 3, p50: 7.5, p99: 9.95 });
    expect(s.points[0]).to.deep.equal({
      t: s.points[0]!.t,
      count: 0,
      errors: 0,
      rps: 0,
      p50: null,
      p99: null,
    });
  });

  it("uses only the asked function's buckets and drops slices older than the hour", () => {
    const s = functionStats(
      [
        reply("gw", [bucket(LAST, 7, 0, hist([[1, 7]]))], "other"),
        reply("gw2", [bucket(LAST - STATS_BUCKETS * W, 9, 0, hist([[1, 9]]))]),
      ],
      "default",
      "hello",
      NOW,
    );
    expect(s.points.reduce((a, p) => a + p.count, 0)).to.equal(0);
  });
});
