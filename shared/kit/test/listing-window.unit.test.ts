import { expect } from "chai";
import { ListingWindow } from "../src/listing-window";

interface Item {
  key: string;
  v: number;
}
const keyOf = (i: Item) => i.key;

describe("ListingWindow (shared/kit)", () => {
  it("without writes: applies every listed item and removes the current keys the listing lacks", () => {
    const w = new ListingWindow();
    w.begin();
    const r = w.merge(
      [
        { key: "a", v: 1 },
        { key: "b", v: 1 },
      ],
      keyOf,
      ["a", "gone"],
    );
    expect(r.apply.map(keyOf)).to.deep.equal(["a", "b"]);
    expect(r.remove).to.deep.equal(["gone"]);
  });

  it("a key written during the window wins over the listing: neither applied nor removed", () => {
    const w = new ListingWindow();
    w.begin();
    w.touch("updated"); // an event newer than the listing's copy
    w.touch("created"); // created after the snapshot: missing from the listing, yet kept
    w.touch("deleted"); // deleted meanwhile: the listing must not bring it back
    const r = w.merge(
      [
        { key: "updated", v: 1 },
        { key: "deleted", v: 1 },
        { key: "other", v: 1 },
      ],
      keyOf,
      ["updated", "created", "stale"],
    );
    expect(r.apply.map(keyOf)).to.deep.equal(["other"]);
    expect(r.remove).to.deep.equal(["stale"]);
  });

  it("writes outside a window do not count: before begin(), after merge, after abort", () => {
    const w = new ListingWindow();
    w.touch("before");
    w.begin();
    expect(w.open).to.equal(true);
    w.merge([], keyOf, []);
    expect(w.open).to.equal(false);
    w.touch("between");
    w.begin();
    w.touch("failed-attempt");
    w.abort();
    expect(w.open).to.equal(false);
    w.begin(); // the retry: a new window
    const r = w.merge([{ key: "before", v: 2 }], keyOf, ["between", "failed-attempt"]);
    expect(r.apply.map(keyOf)).to.deep.equal(["before"]);
    expect(r.remove).to.deep.equal(["between", "failed-attempt"]);
  });

  it("begin() restarts an open window (a retried attempt forgets the failed one's writes)", () => {
    const w = new ListingWindow();
    w.begin();
    w.touch("a");
    w.begin();
    expect(w.merge([{ key: "a", v: 1 }], keyOf, []).apply.map(keyOf)).to.deep.equal(["a"]);
  });

  it("merge without begin(): nothing is touched", () => {
    const w = new ListingWindow();
    w.touch("a");
    expect(w.merge([{ key: "a", v: 1 }], keyOf, ["b"])).to.deep.equal({
      apply: [{ key: "a", v: 1 }],
      remove: ["b"],
      kept: [],
    });
  });

  it("a key the registry skipped (could not read) is kept, not removed; one it never had stays out", () => {
    interface Obj {
      metadata: { namespace: string; name: string };
      v: number;
    }
    const obj = (ns: string, name: string, v = 1): Obj => ({
      metadata: { namespace: ns, name },
      v,
    });
    const byName = (o: { metadata: { namespace: string; name: string } }) =>
      `${o.metadata.namespace}/${o.metadata.name}`;
    const w = new ListingWindow();
    w.begin();
    w.touch("default/touched");
    const r = w.merge(
      [obj("default", "a", 2)],
      byName,
      ["default/a", "default/unreadable", "other/unreadable", "default/touched", "default/gone"],
      [
        { namespace: "default", name: "unreadable" },
        { namespace: "other", name: "unreadable" },
        { namespace: "default", name: "touched" },
        { namespace: "default", name: "never-held" },
      ],
    );
    expect(r.apply).to.deep.equal([obj("default", "a", 2)]);
    expect(r.remove, "only what is neither listed, touched nor skipped").to.deep.equal([
      "default/gone",
    ]);
    expect(r.kept).to.deep.equal(["default/unreadable", "other/unreadable"]);
    // Without `skipped` (an older registry's reply) the same keys are removed.
    w.begin();
    expect(w.merge([], byName, ["default/unreadable"], undefined).remove).to.deep.equal([
      "default/unreadable",
    ]);
  });
});
