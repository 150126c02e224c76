import { expect } from "chai";
import { objectSchemas } from "@fizz/events";
import { KnownJson } from "../src/store-parse";

/**
 * KnownJson (store-parse.ts) remembers which stored texts this process found readable, learnt by
 * listings only (a write forgets its key). It must stay as large as the objects listed, not as the
 * writes made: a registry that writes often (status updates, builds) would otherwise grow for ever.
 */
describe("KnownJson memory", () => {
  const key = "fizz:obj:environments:default:py";
  const text = (revision: number) =>
    JSON.stringify(
      objectSchemas.environments.parse({
        kind: "Environment",
        apiVersion: "fizz.dev/v1",
        metadata: {
          namespace: "default",
          name: "py",
          uid: "u1",
          revision,
          labels: {},
          createdAt: "2026-01-01T00:00:00.000Z",
          updatedAt: "2026-01-01T00:00:00.000Z",
        },
        spec: { image: "fizz/env-python" },
      }),
    );

  it("keeps one text per object however often it is listed, and none once it is forgotten", () => {
    const known = new KnownJson();
    for (let r = 1; r <= 3000; r++) known.json("environments", key, text(r));
    expect(known.size("environments")).to.equal(1);
    // The latest text is the known one: answered as stored.
    expect(known.json("environments", key, text(3000))).to.equal(text(3000));
    known.forget("environments", key);
    expect(known.size("environments")).to.equal(0);
  });

  it("does not take a text known under one key for another key's", () => {
    const known = new KnownJson();
    known.json("environments", key, text(1));
    known.json("environments", `${key}2`, text(2));
    expect(known.size("environments")).to.equal(2);
  });

  it("answers another text under a known key from its own parse, not the known one", () => {
    const known = new KnownJson();
    known.json("environments", key, text(1));
    expect(known.json("environments", key, text(2))).to.equal(text(2));
    expect(known.object("environments", key, text(3)).metadata.revision).to.equal(3);
  });

  describe("a page's texts as bytes (jsonBytes)", () => {
    const labelled = (note: string) => {
      const obj = objectSchemas.environments.parse(JSON.parse(text(1)));
      obj.metadata.labels = { note };
      return JSON.stringify(obj);
    };

    it("answers known canonical bytes as they are, and the memory is shared with json", () => {
      const known = new KnownJson();
      const raw = Buffer.from(text(1));
      // First time: checked, and the answer is the stored bytes (canonical).
      expect(known.jsonBytes("environments", key, raw)).to.equal(raw);
      expect(known.size("environments")).to.equal(1);
      expect(known.jsonBytes("environments", key, raw)).to.equal(raw);
      // A string listing of the same text finds it known.
      expect(known.json("environments", key, text(1))).to.equal(text(1));
      expect(known.size("environments")).to.equal(1);
    });

    it("answers the parsed object's JSON for an older shape, and does not remember it", () => {
      const known = new KnownJson();
      const older = JSON.parse(text(1)) as { spec: Record<string, unknown> };
      delete older.spec.poolSize;
      const raw = Buffer.from(JSON.stringify(older));
      const answer = known.jsonBytes("environments", key, raw);
      expect(answer.toString()).to.equal(text(1));
      expect(known.size("environments")).to.equal(0);
    });

    it("never answers bytes that are not UTF-8 as stored, though they decode to canonical text", () => {
      const known = new KnownJson();
      const canonical = labelled("a\ufffdb");
      // U+FFFD's three bytes replaced by one byte that is not UTF-8: decoding gives it back.
      const at = Buffer.from(canonical).indexOf(Buffer.from("\ufffd"));
      const good = Buffer.from(canonical);
      const raw = Buffer.concat([good.subarray(0, at), Buffer.from([0xff]), good.subarray(at + 3)]);
      expect(raw.toString()).to.equal(canonical);
      for (let i = 0; i < 2; i++) {
        const answer = known.jsonBytes("environments", key, raw);
        expect(answer.equals(Buffer.from(canonical))).to.equal(true);
      }
      expect(known.size("environments")).to.equal(0);
    });

    it("refuses bytes that do not match the schema, and forgets the key's known text", () => {
      const known = new KnownJson();
      known.jsonBytes("environments", key, Buffer.from(text(1)));
      expect(() => known.jsonBytes("environments", key, Buffer.from("{}"))).to.throw(
        /does not match its schema/,
      );
      expect(known.size("environments")).to.equal(0);
    });
  });
});
