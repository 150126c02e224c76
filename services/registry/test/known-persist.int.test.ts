import { createHash, createHmac, randomBytes } from "node:crypto";
import { expect } from "chai";
import { Redis } from "ioredis";
import { redisKeys } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { startRedis, waitFor } from "@fizz/testkit";
import { KNOWN_FORMAT } from "../src/known-fingerprint";
import { RedisStore } from "../src/store";
import type { KnownJson } from "../src/store-parse";
import { fixtureEnv, fixtureName } from "./learn-fixture";

/**
 * Known texts persisted across restarts (known-persist.ts): a new store over the same Redis (what
 * a restarted registry builds) answers unchanged objects without checking them, but only under
 * the same code fingerprint, only for the exact text learnt, and only for entries this registry's
 * key sealed: anyone who can write Redis can plant entries, and a planted one must never make a
 * malformed object answered.
 */
describe("registry store: known texts persisted across restarts", () => {
  const PREFIX = "known-persist-test:";
  const COUNT = 40;
  const keys = redisKeys(PREFIX);
  const KEY = randomBytes(32);
  const FP = "fp-one";
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let client: Redis;
  const open: RedisStore[] = [];

  const name = fixtureName;
  const env = (i: number) => fixtureEnv(i);
  const objKey = (i: number) => keys.obj("environments", "default", name(i));
  const snapKey = (fp = FP, kind = "environments") => `${PREFIX}known:${fp}:${kind}`;
  const digest = (text: string) => createHash("sha256").update(text).digest("base64");
  /** A snapshot as known-persist.ts writes one, sealed with `key` for `fp` and `kind`. */
  const sealed = (key: Buffer, pairs: [string, string][], fp = FP, kind = "environments") => {
    const body = JSON.stringify(pairs);
    const seal = createHmac("sha256", key)
      .update(`${KNOWN_FORMAT}\0${fp}\0${kind}\0`)
      .update(body)
      .digest("base64");
    return `${seal}\n${body}`;
  };
  /** The entries of the stored snapshot. */
  const entries = async (fp = FP): Promise<[string, string][]> => {
    const v = (await client.get(snapKey(fp))) ?? "";
    return JSON.parse(v.slice(v.indexOf("\n") + 1) || "[]") as [string, string][];
  };

  /** A store as a (re)started registry builds it; `persist: false` keeps it in memory only. */
  async function storeWith(fingerprint = FP, key = KEY, persist = true): Promise<RedisStore> {
    const store = new RedisStore({
      url: redis.url,
      prefix: PREFIX,
      client,
      name: "known-persist-test",
      logger: silentLogger(),
      ...(persist ? { persistKnown: { fingerprint, key } } : {}),
    });
    open.push(store);
    await waitFor(() => store.ready(), { what: "store ready" });
    return store;
  }
  const known = (s: RedisStore) => (s as unknown as { known: KnownJson }).known;
  /** The whole kind in one page, and how many texts the store checked for it. */
  async function page(store: RedisStore) {
    const before = known(store).checks;
    const out = await store.pageJson("environments", { limit: 1000, maxBytes: 10_000_000 });
    return { ...out, checked: known(store).checks - before };
  }
  /** A first store lists (learning every text) and closes, writing what it learnt. */
  async function learnAndRestart(): Promise<void> {
    const first = await storeWith();
    expect((await page(first)).checked).to.equal(COUNT);
    await first.close();
  }

  before(async () => {
    redis = await startRedis();
    client = new Redis(redis.url);
  });
  beforeEach(async () => {
    await client.flushdb();
    // Written by a store that persists nothing (its re-learn after the writes would).
    const store = await storeWith(FP, KEY, false);
    const put = Array.from({ length: COUNT }, (_, i) => env(i));
    await store.transact(() => Promise.resolve({ writes: { put }, result: undefined }));
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
  });
  after(async () => {
    client?.disconnect();
    await redis?.cleanup();
  });

  it("answers a restart's first listing without checking any unchanged object, bytes as stored", async () => {
    await learnAndRestart();
    expect(await entries()).to.have.length(COUNT);
    const restarted = await storeWith();
    const out = await page(restarted);
    expect(out.checked).to.equal(0);
    expect(out.skipped).to.deep.equal([]);
    expect(out.items.map((b) => b.toString())).to.deep.equal(
      Array.from({ length: COUNT }, (_, i) => JSON.stringify(env(i))),
    );
    // Pre-learning after that start finds everything known too.
    expect(await restarted.learnStored(new AbortController().signal)).to.equal(COUNT);
    expect(known(restarted).checks).to.equal(0);
  });

  it("checks everything again under another code fingerprint", async () => {
    await learnAndRestart();
    expect((await page(await storeWith("fp-two"))).checked).to.equal(COUNT);
  });

  it("checks an object changed in Redis after it was learnt, and only that one", async () => {
    await learnAndRestart();
    const changed = { ...env(3), spec: { image: "fizz/env-node", poolSize: 4 } };
    await client.set(objKey(3), JSON.stringify(changed));
    const out = await page(await storeWith());
    expect(out.checked).to.equal(1);
    expect(out.items[3]!.toString()).to.equal(JSON.stringify(changed));
  });

  it("never trusts a planted entry: a malformed object is checked, left out and named in skipped", async () => {
    await learnAndRestart();
    // A malformed object (valid JSON, schema violated) written by someone with Redis access, and
    // an entry for its exact text planted in the snapshot: appended without a seal, sealed with
    // another key, sealed for another build, or another kind's snapshot copied over.
    const bad = JSON.stringify({ ...env(4), spec: { image: 42 } });
    await client.set(objKey(4), bad);
    const good = (await entries()).filter(([k]) => k !== objKey(4));
    const pairs: [string, string][] = [...good, [objKey(4), digest(bad)]];
    const stored = (await client.get(snapKey()))!;
    const forged = {
      appended: `${stored.slice(0, stored.indexOf("\n"))}\n${JSON.stringify(pairs)}`,
      "another key": sealed(randomBytes(32), pairs),
      "another build": sealed(KEY, pairs, "fp-old"),
      "another kind": sealed(KEY, pairs, FP, "functions"),
    };
    for (const [how, snapshot] of Object.entries(forged)) {
      await client.set(snapKey(), snapshot);
      const restarted = await storeWith();
      const out = await page(restarted);
      expect(out.checked, how).to.equal(COUNT);
      expect(out.items, how).to.have.length(COUNT - 1);
      expect(
        out.skipped.map((s) => s.name),
        how,
      ).to.deep.equal([name(4)]);
      await restarted.close();
    }
    // The snapshot the last of them wrote back never names the malformed text.
    expect(new Map(await entries()).has(objKey(4))).to.equal(false);
  });

  it("lists by checking when the persisted entries cannot be read", async () => {
    await learnAndRestart();
    // Not a string: GET fails (WRONGTYPE), as any Redis error would.
    await client.del(snapKey());
    await client.hset(snapKey(), "a", "b");
    const out = await page(await storeWith());
    expect(out.checked).to.equal(COUNT);
    expect(out.items).to.have.length(COUNT);
  });

  it("still trusts the snapshots when the fingerprint index is unusable (another type at its key)", async () => {
    await learnAndRestart();
    // Something else holds the index's key: its commands fail with WRONGTYPE on every start, and
    // no write of ours ever repairs it. That must not void the sealed snapshots (nor make every
    // listing read them all again).
    await client.set(`${PREFIX}known:fingerprints`, "not a sorted set");
    const restarted = await storeWith();
    expect((await page(restarted)).checked).to.equal(0);
    expect((await page(restarted)).checked).to.equal(0);
  });

  it("drops loaded entries past twice the kind's objects, and expires every snapshot it writes", async () => {
    await learnAndRestart();
    // Entries for 1,200 objects deleted meanwhile (by another writer, or while this one was down).
    const stale = Array.from({ length: 1200 }, (_, i): [string, string] => [
      `${PREFIX}gone:${i}`,
      "x",
    ]);
    await client.set(snapKey(), sealed(KEY, [...(await entries()), ...stale]));
    const restarted = await storeWith();
    expect((await page(restarted)).checked).to.equal(0);
    await waitFor(async () => (await entries()).length === COUNT, {
      what: "snapshot rewritten from memory",
    });
    expect(await client.ttl(snapKey())).to.be.greaterThan(6 * 24 * 3600);
    // What it rewrote is still trusted by the next start.
    expect((await page(await storeWith())).checked).to.equal(0);
  });

  it("deletes all but the newest four fingerprints' entries at start", async () => {
    await learnAndRestart();
    for (const fp of ["fp-b", "fp-c", "fp-d", "fp-e"]) {
      const s = await storeWith(fp);
      await page(s);
      await s.close();
    }
    await waitFor(async () => (await client.exists(snapKey())) === 0, {
      what: "oldest fingerprint's hash deleted",
    });
    expect(await client.exists(snapKey("fp-b"))).to.equal(1);
    expect(await client.zcard(`${PREFIX}known:fingerprints`)).to.equal(4);
  });
});
