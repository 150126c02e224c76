import { expect } from "chai";
import type { Invocation } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import type { TickRecord } from "../src/timers/tick-record";
import { TimerCatalog, type TimerChange } from "../src/timers/timer-catalog";
import { TimerLoop } from "../src/timers/timer-loop";
import { changedEvent, timerObj } from "./timer-fixtures";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class MemoryRecord implements TickRecord {
  readonly last = new Map<string, number>();
  async lastFired(ns: string, name: string) {
    return this.last.get(`${ns}/${name}`);
  }
  async recordFired(ns: string, name: string, tick: number) {
    const k = `${ns}/${name}`;
    this.last.set(k, Math.max(this.last.get(k) ?? 0, tick));
  }
  async forget(ns: string, name: string) {
    this.last.delete(`${ns}/${name}`);
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

describe("timer loop (unit: fake stream and record, real clock)", () => {
  let published: Invocation[];
  let record: MemoryRecord;
  let leader: boolean;
  let failures: number;
  let loop: TimerLoop;

  beforeEach(() => {
    published = [];
    record = new MemoryRecord();
    leader = true;
    failures = 0;
    loop = new TimerLoop({
      publish: async (inv) => {
        if (failures > 0) {
          failures--;
          throw new Error("stream unavailable");
        }
        published.push(inv);
      },
      record,
      isLeader: () => leader,
      catchupMs: 60_000,
      now: () => Date.now(),
      logger: silentLogger(),
    });
  });
  afterEach(() => loop.stop());

  it("fires nothing while following, whatever it knows", async () => {
    loop.apply({
      op: "put",
      trigger: timerObj("t", "@every 1s", { updatedAt: new Date(0).toISOString() }),
    });
    await sleep(1200);
    expect(published).to.deep.equal([]);
  });

  it("on becoming leader fires one catch-up for the latest missed tick, none of the older ones", async () => {
    const now = Date.now();
    record.last.set("default/t", now - 30_000);
    loop.apply({
      op: "put",
      trigger: timerObj("t", "@every 1s", { updatedAt: new Date(0).toISOString() }),
    });
    loop.lead();
    await waitFor(() => published.length >= 1, { timeoutMs: 2000 });
    await sleep(50);
    const latest = Math.floor(now / 1000) * 1000;
    const ticks = published.map((i) => Date.parse(i.headers["x-fizz-scheduled-time"]!));
    // The catch-up, and possibly the next on-time tick if a second boundary passed meanwhile.
    expect(ticks[0]).to.be.within(latest, latest + 1000);
    expect(ticks.every((t) => t >= latest)).to.equal(true);
    expect(record.last.get("default/t")).to.equal(ticks[ticks.length - 1]);
  });

  it("owes a missed tick only if the timer, as it stands, existed then", async () => {
    const tick = new Date(Date.now() - 10_000);
    const daily = `${tick.getUTCSeconds()} ${tick.getUTCMinutes()} ${tick.getUTCHours()} * * *`;
    const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
    loop.apply({ op: "put", trigger: timerObj("changed-since", daily, { updatedAt: ago(5000) }) });
    loop.apply({ op: "put", trigger: timerObj("older", daily, { updatedAt: ago(20_000) }) });
    loop.lead();
    await waitFor(() => published.length >= 1, { timeoutMs: 2000 });
    await sleep(100);
    expect(published.map((i) => [i.trigger, i.headers["x-fizz-scheduled-time"]])).to.deep.equal([
      ["older", new Date(Math.floor(tick.getTime() / 1000) * 1000).toISOString()],
    ]);
  });

  it("retries a failed publication of the same tick", async () => {
    failures = 2;
    record.last.set("default/t", Date.now() - 2000);
    loop.apply({
      op: "put",
      trigger: timerObj("t", "@every 1s", { updatedAt: new Date(0).toISOString() }),
    });
    loop.lead();
    await waitFor(() => published.length >= 1, { timeoutMs: 3000 });
    expect(failures).to.equal(0);
  });

  it("publishes nothing once the lease is no longer valid, even before being told", async () => {
    record.last.set("default/t", Date.now() - 5000);
    leader = false;
    loop.apply({
      op: "put",
      trigger: timerObj("t", "@every 1s", { updatedAt: new Date(0).toISOString() }),
    });
    loop.lead();
    await sleep(1200);
    expect(published).to.deep.equal([]);
  });

  it("stops firing a removed timer, and forgets its record", async () => {
    loop.apply({ op: "put", trigger: timerObj("t", "@every 1s") });
    loop.lead();
    await waitFor(() => published.length >= 1, { timeoutMs: 2500 });
    loop.apply({ op: "removed", namespace: "default", name: "t" });
    const n = published.length;
    await sleep(1200);
    expect(published.length).to.equal(n);
    await waitFor(() => !record.last.has("default/t"), { timeoutMs: 1000 });
  });
});
