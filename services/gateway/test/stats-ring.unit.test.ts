import { expect } from "chai";
import { STATS_BUCKETS, STATS_BUCKET_SECONDS, STATS_LATENCY_BOUNDS_MS } from "@fizz/events";
import { FakeClock } from "@fizz/testkit";
import { WallClock } from "../src/stats/function-stats";
import { StatsRing } from "../src/stats/stats-ring";

const BUCKET_MS = STATS_BUCKET_SECONDS * 1000;
const SLOTS = STATS_LATENCY_BOUNDS_MS.length + 1;

describe("gateway stats ring (gateway.stats history)", () => {
  // A slice boundary, so "same slice" below is exact.
  const start = 1_700_000_000_000 - (1_700_000_000_000 % BUCKET_MS);

  it("counts answers, 5xx and unanswered calls as errors, and latency per bound, in the slice of the clock", () => {
    const clock = new FakeClock(start + 1234);
    const ring = new StatsRing();
    ring.record(clock.now(), 200, 0.5);
    ring.record(clock.now(), 404, 3);
    ring.record(clock.now(), 503, 1000);
    ring.record(clock.now(), 0, 70_000);
    const [b, ...rest] = ring.buckets(clock.now());
    expect(rest).to.have.length(0);
    expect(b?.t).to.equal(start);
    expect(b?.count).to.equal(4);
    expect(b?.errors).to.equal(2);
    const expected = new Array<number>(SLOTS).fill(0);
    expected[0] = 1; // 0.5 ms <= 1 ms
    expected[2] = 1; // 3 ms <= 5 ms
    expected[STATS_LATENCY_BOUNDS_MS.indexOf(1000)] = 1; // on a bound: that bound
    expected[SLOTS - 1] = 1; // past the last bound
    expect(b?.latency).to.deep.equal(expected);
  });

  it("starts a new slice every STATS_BUCKET_SECONDS and lists slices oldest first", () => {
    const clock = new FakeClock(start);
    const ring = new StatsRing();
    ring.record(clock.now(), 200, 1);
    clock.t += BUCKET_MS;
    ring.record(clock.now(), 200, 1);
    ring.record(clock.now(), 200, 1);
    clock.t += 5 * BUCKET_MS;
    ring.record(clock.now(), 500, 1);
    expect(ring.buckets(clock.now()).map((b) => [b.t - start, b.count, b.errors])).to.deep.equal([
      [0, 1, 0],
      [BUCKET_MS, 2, 0],
      [6 * BUCKET_MS, 1, 1],
    ]);
  });

  it("keeps every slice of a full hour apart, then reuses each slot for the next hour", () => {
    const clock = new FakeClock(start);
    const ring = new StatsRing();
    for (let i = 0; i < STATS_BUCKETS; i++, clock.t += BUCKET_MS)
      for (let n = 0; n <= i % 3; n++) ring.record(clock.now(), 200, 1);
    clock.t -= BUCKET_MS;
    const hour = ring.buckets(clock.now());
    expect(hour.map((b) => (b.t - start) / BUCKET_MS)).to.deep.equal(
      Array.from({ length: STATS_BUCKETS }, (_, i) => i),
    );
    expect(hour.map((b) => b.count)).to.deep.equal(
      Array.from({ length: STATS_BUCKETS }, (_, i) => (i % 3) + 1),
    );
    clock.t += BUCKET_MS;
    ring.record(clock.now(), 500, 1);
    const next = ring.buckets(clock.now());
    expect(next).to.have.length(STATS_BUCKETS);
    expect(next[0]?.t).to.equal(start + BUCKET_MS);
    expect(next[STATS_BUCKETS - 1]).to.include({ t: clock.now(), count: 1, errors: 1 });
  });

  it("forgets slices older than an hour, and clears a reused slot instead of adding to it", () => {
    const clock = new FakeClock(start);
    const ring = new StatsRing();
    ring.record(clock.now(), 200, 1);
    ring.record(clock.now(), 200, 1);
    clock.t += (STATS_BUCKETS - 1) * BUCKET_MS;
    expect(ring.buckets(clock.now()).map((b) => b.count)).to.deep.equal([2]);
    clock.t += BUCKET_MS; // an hour after the first slice: it has left the window
    expect(ring.buckets(clock.now())).to.deep.equal([]);
    expect(ring.active(clock.now())).to.equal(false);
    // Same slot as the first slice, an hour later: counts start from zero.
    ring.record(clock.now(), 503, 1);
    expect(ring.buckets(clock.now()).map((b) => [b.t - start, b.count, b.errors])).to.deep.equal([
      [STATS_BUCKETS * BUCKET_MS, 1, 1],
    ]);
  });

  it("leaves out slices stamped after now (a clock stepped back)", () => {
    const clock = new FakeClock(start + 10 * BUCKET_MS);
    const ring = new StatsRing();
    ring.record(clock.now(), 200, 1);
    clock.t -= 5 * BUCKET_MS;
    expect(ring.buckets(clock.now())).to.deep.equal([]);
  });
});

describe("gateway stats wall clock (from the request's performance.now reading)", () => {
  it("adds the elapsed monotonic time to the wall clock, and takes the wall clock again after resyncMs", () => {
    const clock = new FakeClock(1_000_000);
    const wall = new WallClock(clock, 1000);
    expect(wall.at(50)).to.equal(1_000_000);
    clock.t += 5000; // read only at the next resync
    expect(wall.at(550)).to.equal(1_000_500);
    // A second later: the stepped wall clock is seen.
    expect(wall.at(1050)).to.equal(1_005_000);
    expect(wall.at(1051)).to.equal(1_005_001);
  });
});
