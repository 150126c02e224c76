import { expect } from "chai";
import type { Redis } from "ioredis";
import type { Environment } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { RedisStore } from "../src/store";
import { KnownJson } from "../src/store-parse";
import { Relearn, type RelearnPace } from "../src/store-relearn";
import { learnFixture } from "./learn-fixture";

/**
 * Written objects learnt again once writes go quiet (store-relearn.ts): after a burst of creates
 * the first listing must not have to check every object, and what is learnt must be exactly what
 * a listing would accept (the text read, readable and canonical), never a text it did not check.
 */

describe("registry store: written objects learnt again after writes go quiet", () => {
  const PREFIX = "relearn-test:";
  const COUNT = 120;
  const PACE: RelearnPace = {
    quietMs: 50,
    step: 17,
    share: 0.5,
    maxPending: 1000,
    maxWaitMs: 60_000,
  };
  const relearnOf = (known: KnownJson, pace = PACE) =>
    new Relearn(f.client, (k, objKey, raw) => known.learn(k, objKey, raw), pace);
  const f = learnFixture({ prefix: PREFIX, count: COUNT, store: "relearn-test" });
  const { env, key, name, page } = f;

  it("learns the written keys after the quiet period, so the next page checks only the others", async () => {
    const known = new KnownJson();
    const relearn = relearnOf(known);
    for (let i = 0; i < 100; i++) relearn.note("environments", key(i));
    await waitFor(() => relearn.learnt === 100, { what: "the written keys learnt" });
    const listed = await page(known);
    expect(listed.items).to.have.length(COUNT);
    // Only the 20 objects nobody wrote are checked on the listing's time.
    expect(listed.checked).to.equal(COUNT - 100);
    expect(listed.items.map((b) => b.toString())).to.deep.equal(
      Array.from({ length: COUNT }, (_, i) => JSON.stringify(env(i))),
    );
    relearn.close();
  });

  it("learns no unreadable text and leaves a later rewrite to the listing's check", async () => {
    const known = new KnownJson();
    const relearn = relearnOf(known);
    await f.client.set(key(3), JSON.stringify({ kind: "Environment" }));
    await f.client.del(key(4));
    try {
      for (const i of [3, 4, 5]) relearn.note("environments", key(i));
      await waitFor(() => relearn.learnt === 1, { what: "the readable key learnt" });
      // Rewritten after it was learnt (another writer): a different text, so checked again.
      await f.client.set(key(5), JSON.stringify(env(5, "changed")));
      const listed = await page(known);
      expect(listed.skipped).to.deep.equal([{ namespace: "default", name: name(3) }]);
      const five = listed.items.find((b) => b.toString().includes(`"${name(5)}"`));
      expect(five?.toString()).to.equal(JSON.stringify(env(5, "changed")));
      // Every text on the page was checked: the one learnt (5) no longer matches what is stored.
      expect(listed.checked).to.equal(COUNT - 1);
    } finally {
      relearn.close();
      const p = f.client.pipeline();
      for (const i of [3, 4, 5]) p.set(key(i), JSON.stringify(env(i)));
      await p.exec();
    }
  });

  it("learns a lone write even when its quiet timer fires a fraction of a millisecond early", async () => {
    // Node's timers count whole milliseconds of the loop's clock, so one may fire up to ~1 ms
    // before performance.now() says its delay passed. The drain then found writes "not quiet",
    // returned, and no later timer existed: the keys stayed queued until the next write. Many
    // lone writes at random sub-millisecond offsets make such a firing all but certain.
    const pace = { ...PACE, quietMs: 3 };
    const runs = Array.from({ length: 150 }, () => ({ known: new KnownJson() }));
    const relearns = runs.map(({ known }) => relearnOf(known, pace));
    try {
      for (const r of relearns) {
        const until = performance.now() + Math.random();
        while (performance.now() < until);
        r.note("environments", key(7));
        await new Promise((res) => setImmediate(res));
      }
      await new Promise((r) => setTimeout(r, 100 * pace.quietMs));
      const stranded = relearns.filter((r) => r.learnt !== 1).length;
      expect(stranded, "relearns whose key stayed queued").to.equal(0);
    } finally {
      for (const r of relearns) r.close();
    }
  });

  it("keeps the keys of a read that failed and reads them once Redis answers again", async () => {
    // A failed MGET dropped its step's keys for good and went straight on to the next step, so a
    // Redis blip during a drain emptied the whole queue in a burst of failing calls.
    const known = new KnownJson();
    const calls: number[] = [];
    const flaky = {
      mgetBuffer: (...objKeys: string[]) => {
        calls.push(performance.now());
        return calls.length <= 2
          ? Promise.reject(new Error("Connection is closed."))
          : f.client.mgetBuffer(...objKeys);
      },
    } as unknown as Redis;
    const relearn = new Relearn(flaky, (k, objKey, raw) => known.learn(k, objKey, raw), PACE);
    try {
      for (let i = 0; i < 40; i++) relearn.note("environments", key(i));
      await waitFor(() => relearn.learnt === 40, { what: "every key learnt after the blip" });
      // After a failed read it waits a quiet period (timers may fire ~1 ms early) before the next.
      expect(calls[1]! - calls[0]!).to.be.at.least(PACE.quietMs - 2);
      expect(calls[2]! - calls[1]!).to.be.at.least(PACE.quietMs - 2);
    } finally {
      relearn.close();
    }
  });

  it("keeps the store's memory bounded when another writer removes what it wrote", async () => {
    // Learning written keys with no listing involved also skipped the bound every listing applies
    // (KnownJson.bound): objects this registry created and another replica removed stayed
    // remembered for as long as nobody listed, one digest per create.
    const prefix = "relearn-bound:";
    const mine = new RedisStore({
      url: f.redis.url,
      prefix,
      client: f.client,
      name: "a",
      logger: silentLogger(),
    });
    const other = new RedisStore({
      url: f.redis.url,
      prefix,
      client: f.client,
      name: "b",
      logger: silentLogger(),
    });
    const churn = (i: number): Environment => ({
      ...env(i),
      metadata: { ...env(i).metadata, namespace: "churn", name: `c-${i}` },
    });
    const known = (mine as unknown as { known: KnownJson }).known;
    try {
      await waitFor(() => mine.ready() && other.ready(), { what: "stores ready" });
      const put = Array.from({ length: 1300 }, (_, i) => churn(i));
      await mine.transact(() => Promise.resolve({ writes: { put }, result: undefined }));
      await waitFor(() => known.size("environments") === 1300, {
        what: "the creates learnt",
        timeoutMs: 20_000,
      });
      const remove = put.map((o) => ({ kind: "environments" as const, ...o.metadata }));
      await other.transact(() => Promise.resolve({ writes: { remove }, result: undefined }));
      // One more create here: once it is learnt, what is remembered fits what is stored.
      await mine.transact(() =>
        Promise.resolve({ writes: { put: [churn(5000)] }, result: undefined }),
      );
      await new Promise((r) => setTimeout(r, 2500));
      expect(known.size("environments")).to.be.at.most(2 * 1 + 1024);
    } finally {
      await mine.close();
      await other.close();
    }
  });

  it("learns what a writer that never pauses wrote, once the oldest key waited maxWaitMs", async () => {
    const known = new KnownJson();
    const relearn = relearnOf(known, { ...PACE, quietMs: 200, maxWaitMs: 300 });
    // A write every 20 ms: never 200 ms of quiet. The test's own condition ends the writing, so
    // the check does not depend on how fast this machine runs: before the cap nothing was learnt
    // until the writes stopped, and this loop ran into waitFor's timeout.
    let i = 0;
    const writer = setInterval(() => relearn.note("environments", key(i++ % COUNT)), 20);
    try {
      await waitFor(() => relearn.learnt > 0, { what: "keys learnt while writes go on" });
    } finally {
      clearInterval(writer);
      relearn.close();
    }
  });

  it("holds at most maxPending keys and reads nothing once closed", async () => {
    const known = new KnownJson();
    const bounded = relearnOf(known, { ...PACE, maxPending: 10 });
    for (let i = 0; i < 30; i++) bounded.note("environments", key(i));
    await waitFor(() => bounded.learnt === 10, { what: "the bounded keys learnt" });
    await new Promise((r) => setTimeout(r, 4 * PACE.quietMs));
    expect(bounded.learnt).to.equal(10);
    bounded.close();

    const closed = relearnOf(known);
    closed.note("environments", key(50));
    closed.close();
    closed.note("environments", key(51));
    await new Promise((r) => setTimeout(r, 4 * PACE.quietMs));
    expect(closed.learnt).to.equal(0);
  });
});
