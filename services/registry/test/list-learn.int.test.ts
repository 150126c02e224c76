import { expect } from "chai";
import { Redis } from "ioredis";
import { API_VERSION, redisKeys, type Environment } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { startRedis, waitFor } from "@fizz/testkit";
import { RedisStore } from "../src/store";
import { learnStored, listPage } from "../src/store-page";
import { KnownJson } from "../src/store-parse";

/**
 * Pre-learning after start (store-page.ts learnStored): the registry reads every stored object in
 * the background and remembers the readable canonical texts, so the first listing after a start
 * answers them as stored. It must learn exactly what a listing would (never an unreadable, older
 * or non-UTF-8 text), and a text changed after it learnt must still be checked by the listing.
 */
describe("registry store: pre-learning stored texts", () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let client: Redis;
  let store: RedisStore;
  const PREFIX = "learn-test:";
  const keys = redisKeys(PREFIX);
  const COUNT = 230;
  const name = (i: number) => `e-${String(i).padStart(3, "0")}`;
  const env = (i: number): Environment => ({
    apiVersion: API_VERSION,
    kind: "Environment",
    metadata: {
      namespace: "default",
      name: name(i),
      uid: `u${i}`,
      revision: 1,
      labels: { note: `n${i}` },
      createdAt: "2026-01-01T00:00:00.000Z",
      updatedAt: "2026-01-01T00:00:00.000Z",
    },
    spec: { image: "fizz/env-node", poolSize: 3 },
  });
  const key = (i: number) => keys.obj("environments", "default", name(i));
  const learnAll = (known: KnownJson, signal = new AbortController().signal) =>
    learnStored(
      client,
      PREFIX,
      ["environments"],
      (k, objKey, raw) => known.learn(k, objKey, raw),
      signal,
      // Steps that do not divide the count: the walk must continue past each step's last name.
      { step: 17, share: 0.5 },
    );
  /** A page read as a listing reads it, counting the texts it had to parse and check. */
  const page = async (known: KnownJson) => {
    const before = known.checks;
    const out = await listPage(
      client,
      PREFIX,
      "environments",
      { limit: COUNT + 10, maxBytes: 10_000_000 },
      (kind, objKey, raw) => {
        try {
          return known.jsonBytes(kind, objKey, raw);
        } catch {
          return undefined;
        }
      },
    );
    return { ...out, checked: known.checks - before };
  };

  before(async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
    store = new RedisStore({
      url: redis.url,
      prefix: PREFIX,
      client,
      name: "learn-test",
      logger: silentLogger(),
    });
    await waitFor(() => store.ready(), { what: "store ready" });
    const put = Array.from({ length: COUNT }, (_, i) => env(i));
    await store.transact(() => Promise.resolve({ writes: { put }, result: undefined }));
  });

  after(async () => {
    await store?.close();
    client?.disconnect();
    await redis?.cleanup();
  });

  it("learns every readable canonical object, so the first page after it checks none", async () => {
    const known = new KnownJson();
    expect(await learnAll(known)).to.equal(COUNT);
    expect(known.size("environments")).to.equal(COUNT);
    const first = await page(known);
    expect(first.items).to.have.length(COUNT);
    expect(first.checked).to.equal(0);
    // Each answer is the object's JSON, as encoding the object gives it.
    expect(first.items.map((b) => b.toString())).to.deep.equal(
      Array.from({ length: COUNT }, (_, i) => JSON.stringify(env(i))),
    );
  });

  it("learns no unreadable, older-shaped or non-UTF-8 text, and the listing still checks them", async () => {
    const bad = (i: number) => {
      const o = JSON.parse(JSON.stringify(env(i))) as Environment;
      o.metadata.labels = { note: "a\ufffdb" };
      const good = Buffer.from(JSON.stringify(o));
      const at = good.indexOf(Buffer.from("\ufffd"));
      // F0 90 80 is a 4-byte sequence cut short: it decodes to one U+FFFD, also 3 bytes, so the
      // decoded text is canonical and as long as the stored bytes; they are still not UTF-8.
      return {
        canonical: good,
        raw: Buffer.concat([
          good.subarray(0, at),
          Buffer.from([0xf0, 0x90, 0x80]),
          good.subarray(at + 3),
        ]),
      };
    };
    const older = JSON.parse(JSON.stringify(env(1))) as { spec: Record<string, unknown> };
    delete older.spec.poolSize; // the schema fills the default (3) back in
    const notUtf8 = bad(2);
    expect(notUtf8.raw.toString()).to.equal(notUtf8.canonical.toString());
    expect(notUtf8.raw.length).to.equal(notUtf8.canonical.length);
    await client.set(key(0), JSON.stringify({ kind: "Environment" }));
    await client.set(key(1), JSON.stringify(older));
    await client.set(key(2), notUtf8.raw);
    try {
      const known = new KnownJson();
      expect(await learnAll(known)).to.equal(COUNT - 3);
      const listed = await page(known);
      expect(listed.checked).to.equal(3);
      expect(listed.skipped).to.deep.equal([{ namespace: "default", name: name(0) }]);
      expect(listed.items[0]!.toString()).to.equal(JSON.stringify(env(1)));
      expect(listed.items[1]!.equals(notUtf8.canonical)).to.equal(true);
    } finally {
      const p = client.pipeline();
      for (const i of [0, 1, 2]) p.set(key(i), JSON.stringify(env(i)));
      await p.exec();
    }
  });

  it("leaves a text written after it learnt to the listing's check", async () => {
    const known = new KnownJson();
    await learnAll(known);
    // Behind the registry's back (an operator, another registry): not what was learnt.
    await client.set(key(5), JSON.stringify({ kind: "Environment", metadata: {} }));
    const changed = JSON.parse(JSON.stringify(env(6))) as Environment;
    changed.metadata.labels = { note: "changed" };
    await client.set(key(6), JSON.stringify(changed));
    try {
      const listed = await page(known);
      expect(listed.skipped).to.deep.equal([{ namespace: "default", name: name(5) }]);
      expect(listed.checked).to.equal(2);
      expect(listed.items.map((b) => b.toString())).to.include(JSON.stringify(changed));
    } finally {
      await client.set(key(5), JSON.stringify(env(5)));
      await client.set(key(6), JSON.stringify(env(6)));
    }
  });

  it("stops when its signal aborts", async () => {
    const known = new KnownJson();
    const ctl = new AbortController();
    const running = learnAll(known, ctl.signal);
    ctl.abort();
    const learnt = await running;
    expect(learnt).to.be.below(COUNT);
    expect(known.size("environments")).to.equal(learnt);
  });
});
