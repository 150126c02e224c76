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
});
