import { expect } from "chai";
import { FizzError } from "@fizz/events";
import { listPage } from "../src/store-page";
import { KnownJson } from "../src/store-parse";
import type { PageCursor } from "../src/store-types";
import { learnFixture } from "./learn-fixture";

const COUNT = 200;
const BUDGET = 64 * 1024;

/** ~1 KB to ~150 KB: every fifth object is larger than a whole page's budget. */
const bytesOf = (i: number) => (i % 5 === 0 ? 150_000 : (i % 4) * 10_000 + 1_000);

/**
 * What a page with a byte budget reads from Redis: its texts in chunks up to the budget, not all
 * `limit` of them in one MGET (1,000 objects of 1.4 MB were 1.4 GB in Redis's output buffer and in
 * the registry at once, for a NATS page answering one of them). Counted by Redis itself
 * (INFO stats total_net_output_bytes), not timed.
 */
describe("registry store: a page's byte budget bounds what it reads from Redis", () => {
  const f = learnFixture({ prefix: "page-budget-test:", count: COUNT, store: "page-budget-test" });
  let stored = 0;

  before(async () => {
    const p = f.client.pipeline();
    for (let i = 0; i < COUNT; i++) {
      const o = f.env(i);
      o.metadata.labels.pad = "x".repeat(bytesOf(i));
      const text = JSON.stringify(o);
      stored += text.length;
      p.set(f.key(i), text);
    }
    await p.exec();
  });

  const sentByRedis = async () =>
    Number(/total_net_output_bytes:(\d+)/.exec(await f.client.info("stats"))![1]);

  const read = (after: PageCursor | undefined) =>
    listPage(
      f.client,
      "page-budget-test:",
      "environments",
      { limit: 1000, after, maxBytes: BUDGET },
      (kind, key, raw) => new KnownJson().jsonBytes(kind, key, raw),
    );

  it("reads about its budget from Redis, not every object up to `limit`", async () => {
    const before = await sentByRedis();
    const page = await read(undefined);
    const sent = (await sentByRedis()) - before;
    expect(page.items.length).to.be.within(1, COUNT - 1);
    expect(page.next).to.not.equal(undefined);
    // The page's own bytes, its first MGET's overshoot (objects are up to 150 KB), INFO's reply.
    expect(sent, `bytes Redis sent for a page (all texts: ${stored})`).to.be.below(8 * BUDGET);
  });

  it("follows the budget through every object exactly once, a larger one alone", async () => {
    const names: string[] = [];
    let after: PageCursor | undefined;
    let pages = 0;
    do {
      const page = await read(after);
      const sizes = page.items.map((b) => b.length);
      if (sizes.length > 1) expect(sizes.reduce((a, b) => a + b, 0)).to.be.at.most(BUDGET);
      if (sizes.some((s) => s > BUDGET)) expect(sizes).to.have.length(1);
      for (const b of page.items)
        names.push((JSON.parse(b.toString()) as { metadata: { name: string } }).metadata.name);
      after = page.next;
      pages++;
    } while (after !== undefined && pages < 1000);
    expect(names).to.deep.equal(Array.from({ length: COUNT }, (_, i) => f.name(i)));
    expect(pages).to.be.greaterThan(COUNT / 5);
  });

  it("refuses an unpaginated listing past its bound (LIST_TOO_LARGE) before reading everything", async () => {
    const before = await sentByRedis();
    const err = await f.store.listingJson("environments", undefined, 4 * BUDGET).then(
      () => undefined,
      (e: unknown) => e,
    );
    const sent = (await sentByRedis()) - before;
    expect(err).to.be.instanceOf(FizzError);
    expect((err as FizzError).code).to.equal("LIST_TOO_LARGE");
    expect((err as FizzError).field).to.equal("limit");
    expect(sent, `bytes Redis sent (all texts: ${stored})`).to.be.below(stored / 4);
    // Within its bound, the same listing answers everything, as before.
    const all = await f.store.listingJson("environments", undefined, 2 * stored);
    expect(all.items).to.have.length(COUNT);
  });

  it("never answers part of an unpaginated listing: texts filling the bound exactly with more left", async () => {
    // The bound spent exactly by the first MGET's texts (8 keys): the read stopped there with
    // nothing thrown, and the listing answered those 8 objects as if they were all (a service
    // syncing from it would take the other 192 for deleted).
    const first8 = await Promise.all(
      Array.from({ length: 8 }, (_, i) => f.client.strlen(f.key(i))),
    );
    const bound = first8.reduce((a, b) => a + b, 0);
    const err = await f.store.listingJson("environments", undefined, bound).then(
      (all) => all.items.length,
      (e: unknown) => e,
    );
    expect(err, "LIST_TOO_LARGE, not a part of the listing").to.be.instanceOf(FizzError);
    expect((err as FizzError).code).to.equal("LIST_TOO_LARGE");
  });
});

/**
 * A listing of large objects reads about what its pages answer: the kind's last page's largest
 * text shrinks the next page's first MGET (store-page-read.ts `sizes`), which otherwise reads 2
 * objects under this budget to answer 1 (8 under half of NATS's 1 MB: 8× the listing's bytes).
 */
describe("registry store: pages of large objects read about what they answer", () => {
  const f = learnFixture({ prefix: "page-hint-test:", count: 20, store: "page-hint-test" });
  let stored = 0;

  before(async () => {
    const p = f.client.pipeline();
    for (let i = 0; i < 20; i++) {
      const o = f.env(i);
      o.metadata.labels.pad = "x".repeat(150_000);
      const text = JSON.stringify(o);
      stored += text.length;
      p.set(f.key(i), text);
    }
    await p.exec();
  });

  it("reads each large object about once over a whole listing", async () => {
    const sizes = new Map();
    const sent = Number(/total_net_output_bytes:(\d+)/.exec(await f.client.info("stats"))![1]);
    let after: PageCursor | undefined;
    let pages = 0;
    do {
      const page = await listPage(
        f.client,
        "page-hint-test:",
        "environments",
        { limit: 1000, after, maxBytes: BUDGET },
        (kind, key, raw) => new KnownJson().jsonBytes(kind, key, raw),
        sizes,
      );
      expect(page.items).to.have.length(1);
      after = page.next;
      pages++;
    } while (after !== undefined && pages < 100);
    expect(pages).to.equal(20);
    const total =
      Number(/total_net_output_bytes:(\d+)/.exec(await f.client.info("stats"))![1]) - sent;
    expect(total, `bytes Redis sent (texts: ${stored})`).to.be.below(1.3 * stored);
  });
});
