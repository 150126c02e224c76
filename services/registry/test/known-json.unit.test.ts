import { expect } from "chai";
import { objectSchemas } from "@fizz/events";
import { KnownJson } from "../src/store-parse";

/**
 * KnownJson (store-parse.ts) remembers which stored texts this process found readable. It must
 * stay as large as the objects stored, not as the writes made: a registry that writes often (status
 * updates, builds) and is never asked for a whole listing would otherwise grow for ever.
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

  it("keeps one text per object however often it is written, and none once it is removed", () => {
    const known = new KnownJson();
    for (let r = 1; r <= 3000; r++) known.learn("environments", key, text(r));
    expect(known.size("environments")).to.equal(1);
    // The latest text is the known one: answered as stored.
    expect(known.json("environments", key, text(3000))).to.equal(text(3000));
    known.forget("environments", key);
    expect(known.size("environments")).to.equal(0);
  });

  it("does not take a text known under one key for another key's", () => {
    const known = new KnownJson();
    known.learn("environments", key, text(1));
    known.learn("environments", `${key}2`, text(2));
    expect(known.size("environments")).to.equal(2);
  });
});
