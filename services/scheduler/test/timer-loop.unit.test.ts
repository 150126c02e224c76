import { expect } from "chai";
import type { Invocation } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import type { TickRecord } from "../src/timers/tick-record";
import { TimerCatalog, type TimerChange } from "../src/timers/timer-catalog";
import { TimerLoop } from "../src/timers/timer-loop";
import { FakeClock, settle } from "@fizz/testkit";
import { changedEvent, timerObj } from "./timer-fixtures";

class MemoryRecord implements TickRecord {
  readonly last = new Map<string, number>();
  /** Reads that fail before one succeeds (Redis away). */
  readFailures = 0;
  lastFired(ns: string, name: string) {
    if (this.readFailures > 0) {
      this.readFailures--;
      return Promise.reject(new Error("redis unavailable"));
    }
    return Promise.resolve(this.last.get(`${ns}/${name}`));
  }
  recordFired(ns: string, name: string, tick: number) {
    const k = `${ns}/${name}`;
    this.last.set(k, Math.max(this.last.get(k) ?? 0, tick));
    return Promise.resolve();
  }
  forget(ns: string, name: string) {
    this.last.delete(`${ns}/${name}`);
    return Promise.resolve();
  }
}

describe("timer catalog (unit)", () => {
  let changes: TimerChange[];
  let catalog: TimerCatalog;
  beforeEach(() => {
    changes = [];
    catalog = new TimerCatalog((c) => changes.push(c));
  });

  it("applies created, updated and deleted events, ignoring older revisions and other incarnations", () => {
    catalog.apply(changedEvent("created", timerObj("t", "@every 1s")));
    catalog.apply(changedEvent("updated", timerObj("t", "@every 2s", { revision: 3 })));
    catalog.apply(changedEvent("updated", timerObj("t", "@every 5s", { revision: 2 })));
    catalog.apply(changedEvent("deleted", timerObj("t", "@every 2s", { revision: 3, uid: "old" })));
    expect(catalog.get("default", "t")?.spec.cron).to.equal("@every 2s");
    catalog.apply(changedEvent("deleted", timerObj("t", "@every 2s", { revision: 3 })));
    expect(catalog.size).to.equal(0);
    expect(changes.map((c) => c.op)).to.deep.equal(["put", "put", "removed"]);
  });

  it("a listing adds and removes, but never undoes an event that arrived while it was on its way", () => {
    catalog.apply(changedEvent("created", timerObj("gone", "@every 1s")));
    catalog.apply(changedEvent("created", timerObj("deleted-meanwhile", "@every 1s")));
    catalog.beginListing();
    catalog.apply(changedEvent("deleted", timerObj("deleted-meanwhile", "@every 1s")));
    catalog.apply(changedEvent("created", timerObj("created-meanwhile", "@every 1s")));
    // The registry read before those events: it still has deleted-meanwhile, not created-meanwhile.
    catalog.replaceAll([
      timerObj("deleted-meanwhile", "@every 1s"),
      timerObj("listed", "@every 1s"),
    ]);
    expect([...catalog.all()].map((t) => t.metadata.name).sort()).to.deep.equal([
      "created-meanwhile",
      "listed",
    ]);
  });

  it("a relist of unchanged timers reports no change (nothing is re-armed)", () => {
    const t = timerObj("t", "@every 1s");
    catalog.replaceAll([t]);
    catalog.replaceAll([t]);
    expect(changes).to.have.length(1);
  });
});

describe("timer loop (unit: fake stream, record and clock)", () => {
  /** Half a second past a whole second, so ticks are never at "now". */
  const T0 = Date.UTC(2026, 0, 1, 12, 0, 0, 500);
  const iso = (ms: number) => new Date(ms).toISOString();
  let clock: FakeClock;
  let published: Invocation[];
  let record: MemoryRecord;
  let leader: boolean;
  let failures: number;
  let loop: TimerLoop;
  const ticks = () => published.map((i) => Date.parse(i.headers["x-fizz-scheduled-time"]!));

  beforeEach(() => {
    clock = new FakeClock(T0);
    published = [];
    record = new MemoryRecord();
    leader = true;
    failures = 0;
    loop = new TimerLoop({
      publish: (inv) => {
        if (failures > 0) {
          failures--;
          return Promise.reject(new Error("stream unavailable"));
        }
        published.push(inv);
        return Promise.resolve();
      },
      record,
      isLeader: () => leader,
      catchupMs: 60_000,
      clock,
      logger: silentLogger(),
    });
  });
  afterEach(() => loop.stop());

  it("fires nothing while following, whatever it knows", async () => {
    loop.apply({ op: "put", trigger: timerObj("t", "@every 1s", { updatedAt: iso(0) }) });
    await clock.advance(5_000);
    expect(published).to.deep.equal([]);
    expect(clock.pending).to.equal(0);
  });

  it("fires an @every 1s timer on each whole second, and records each tick", async () => {
    loop.apply({ op: "put", trigger: timerObj("t", "@every 1s", { updatedAt: iso(T0) }) });
    loop.lead();
    await clock.advance(3_000);
    expect(ticks()).to.deep.equal([T0 + 500, T0 + 1500, T0 + 2500]);
    expect(record.last.get("default/t")).to.equal(T0 + 2500);
  });

  it("on becoming leader fires one catch-up for the latest missed tick, none of the older ones", async () => {
    record.last.set("default/t", T0 - 30_000);
    loop.apply({ op: "put", trigger: timerObj("t", "@every 1s", { updatedAt: iso(0) }) });
    loop.lead();
    await settle();
    expect(ticks()).to.deep.equal([T0 - 500]);
    await clock.advance(1_000);
    expect(ticks()).to.deep.equal([T0 - 500, T0 + 500]);
    expect(record.last.get("default/t")).to.equal(T0 + 500);
  });

  it("owes a missed tick only if the timer, as it stands, existed then", async () => {
    const tick = new Date(T0 - 10_500);
    const daily = `${tick.getUTCSeconds()} ${tick.getUTCMinutes()} ${tick.getUTCHours()} * * *`;
    loop.apply({
      op: "put",
      trigger: timerObj("changed-since", daily, { updatedAt: iso(T0 - 5000) }),
    });
    loop.apply({ op: "put", trigger: timerObj("older", daily, { updatedAt: iso(T0 - 20_000) }) });
    loop.lead();
    await clock.advance(1_000);
    expect(published.map((i) => [i.trigger, i.headers["x-fizz-scheduled-time"]])).to.deep.equal([
      ["older", iso(tick.getTime())],
    ]);
  });

  it("retries a failed publication of the same tick, backing off from 200 ms", async () => {
    failures = 2;
    // Every 5 s: the retries (at most 600 ms) stay clear of the next tick.
    record.last.set("default/t", T0 - 1_500);
    loop.apply({ op: "put", trigger: timerObj("t", "@every 5s", { updatedAt: iso(0) }) });
    loop.lead();
    await settle();
    expect(published).to.deep.equal([]);
    expect(clock.delays).to.have.length(1);
    expect(clock.delays[0]).to.be.within(100, 200);
    await clock.advance(600);
    expect(failures).to.equal(0);
    expect(ticks()).to.deep.equal([T0 - 500]);
    expect(clock.delays[1]).to.be.within(200, 400);
  });

  it("retries reading where the last leader stopped until the record answers, and resumes after it", async () => {
    record.readFailures = 3;
    // The last leader got ahead of our clock: nothing is owed until after its last tick.
    record.last.set("default/t", T0 + 2_500);
    loop.apply({ op: "put", trigger: timerObj("t", "@every 1s", { updatedAt: iso(0) }) });
    loop.lead();
    await clock.advance(5_000);
    expect(record.readFailures).to.equal(0);
    expect(ticks()).to.deep.equal([T0 + 3_500, T0 + 4_500]);
  });

  it("stops retrying the record read at once when leadership ends", async () => {
    record.readFailures = 1_000;
    loop.apply({ op: "put", trigger: timerObj("t", "@every 1s", { updatedAt: iso(0) }) });
    loop.lead();
    await clock.advance(1_000);
    loop.follow();
    await clock.advance(10_000);
    const reads = 1_000 - record.readFailures;
    await clock.advance(60_000);
    expect(1_000 - record.readFailures).to.equal(reads);
    expect(published).to.deep.equal([]);
  });

  it("publishes nothing once the lease is no longer valid, even before being told", async () => {
    record.last.set("default/t", T0 - 5000);
    leader = false;
    loop.apply({ op: "put", trigger: timerObj("t", "@every 1s", { updatedAt: iso(0) }) });
    loop.lead();
    await clock.advance(3_000);
    expect(published).to.deep.equal([]);
  });

  it("stops firing a removed timer, and forgets its record", async () => {
    loop.apply({ op: "put", trigger: timerObj("t", "@every 1s", { updatedAt: iso(T0) }) });
    loop.lead();
    await clock.advance(1_000);
    expect(published).to.have.length(1);
    loop.apply({ op: "removed", namespace: "default", name: "t" });
    await clock.advance(5_000);
    expect(published).to.have.length(1);
    expect(record.last.has("default/t")).to.equal(false);
  });
});
