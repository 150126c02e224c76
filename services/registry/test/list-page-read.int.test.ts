import { expect } from "chai";
import { KnownJson } from "../src/store-parse";
import { learnFixture } from "./learn-fixture";

/**
 * A page's texts are read as bytes (one MGET, store-page.ts) and cut into the page by their
 * lengths: each object must come back as its own exact bytes whatever the lengths around it
 * (multi-byte text included), and a key that holds no text (gone, or another type written behind
 * the registry's back) must read as gone, as MGET answers it, without failing the page or shifting
 * the texts after it.
 */
describe("registry store: a page's texts read as bytes", () => {
  const PREFIX = "page-read-test:";
  const COUNT = 40;
  const f = learnFixture({ prefix: PREFIX, count: COUNT, store: "page-read-test" });
  const { env, key, name } = f;

  it("answers each object's own bytes when texts differ in length and hold multi-byte text", async () => {
    const notes = ["", "é", "日本語のラベル", "long", "😀"];
    const texts = Array.from({ length: COUNT }, (_, i) => {
      const o = env(i, notes[i % notes.length]);
      // A few KB: longer than the texts around it.
      if (i % notes.length === 3)
        for (let j = 0; j < 50; j++) o.metadata.labels[`k${j}`] = "x".repeat(60);
      return JSON.stringify(o);
    });
    const p = f.client.pipeline();
    texts.forEach((t, i) => p.set(key(i), t));
    await p.exec();
    try {
      const page = await f.page(new KnownJson());
      expect(page.items.map((b) => b.toString("utf8"))).to.deep.equal(texts);
      expect(page.skipped).to.deep.equal([]);
    } finally {
      const back = f.client.pipeline();
      for (let i = 0; i < COUNT; i++) back.set(key(i), JSON.stringify(env(i)));
      await back.exec();
    }
  });

  it("reads a key holding another type, or nothing, as gone, and the texts after it stay whole", async () => {
    await f.client.del(key(3));
    await f.client.hset(key(3), "not", "a text");
    await f.client.del(key(7));
    try {
      const page = await f.page(new KnownJson());
      const names = page.items.map(
        (b) => (JSON.parse(b.toString()) as { metadata: { name: string } }).metadata.name,
      );
      expect(names).to.have.length(COUNT - 2);
      expect(names).to.not.include(name(3));
      expect(names).to.not.include(name(7));
      expect(page.items.map((b) => b.toString())).to.include(JSON.stringify(env(8)));
      expect(page.skipped).to.deep.equal([]);
    } finally {
      await f.client.del(key(3));
      await f.client.set(key(3), JSON.stringify(env(3)));
      await f.client.set(key(7), JSON.stringify(env(7)));
    }
  });
});
