import { expect } from "chai";
import type { Environment } from "@fizz/events";
import { learnStored } from "../src/store-page";
import { KnownJson } from "../src/store-parse";
import { learnFixture } from "./learn-fixture";

/**
 * Pre-learning after start (store-page.ts learnStored): the registry reads every stored object in
 * the background and remembers the readable canonical texts, so the first listing after a start
 * answers them as stored. It must learn exactly what a listing would (never an unreadable, older
 * or non-UTF-8 text), and a text changed after it learnt must still be checked by the listing.
 */

describe("registry store: pre-learning stored texts", () => {
  const PREFIX = "learn-test:";
  const COUNT = 230;
  const learnAll = (known: KnownJson, signal = new AbortController().signal) =>
    learnStored(
      f.client,
      PREFIX,
      ["environments"],
      (k, objKey, raw) => known.learn(k, objKey, raw),
      signal,
      // Steps that do not divide the count: the walk must continue past each step's last name.
      { step: 17, share: 0.5 },
    );
  const f = learnFixture({ prefix: PREFIX, count: COUNT, store: "learn-test" });
  const { env, key, name, page } = f;

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
    await f.client.set(key(0), JSON.stringify({ kind: "Environment" }));
    await f.client.set(key(1), JSON.stringify(older));
    await f.client.set(key(2), notUtf8.raw);
    try {
      const known = new KnownJson();
      expect(await learnAll(known)).to.equal(COUNT - 3);
      const listed = await page(known);
      expect(listed.checked).to.equal(3);
      expect(listed.skipped).to.deep.equal([{ namespace: "default", name: name(0) }]);
      expect(listed.items[0]!.toString()).to.equal(JSON.stringify(env(1)));
      expect(listed.items[1]!.equals(notUtf8.canonical)).to.equal(true);
    } finally {
      const p = f.client.pipeline();
      for (const i of [0, 1, 2]) p.set(key(i), JSON.stringify(env(i)));
      await p.exec();
    }
  });

  it("leaves a text written after it learnt to the listing's check", async () => {
    const known = new KnownJson();
    await learnAll(known);
    // Behind the registry's back (an operator, another registry): not what was learnt.
    await f.client.set(key(5), JSON.stringify({ kind: "Environment", metadata: {} }));
    const changed = JSON.parse(JSON.stringify(env(6))) as Environment;
    changed.metadata.labels = { note: "changed" };
    await f.client.set(key(6), JSON.stringify(changed));
    try {
      const listed = await page(known);
      expect(listed.skipped).to.deep.equal([{ namespace: "default", name: name(5) }]);
      expect(listed.checked).to.equal(2);
      expect(listed.items.map((b) => b.toString())).to.include(JSON.stringify(changed));
    } finally {
      await f.client.set(key(5), JSON.stringify(env(5)));
      await f.client.set(key(6), JSON.stringify(env(6)));
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
