import { expect } from "chai";
import { Catalog } from "../src/catalog";
import { FakeRegistry } from "./fakes";
import { envObj, fnObj } from "./fixtures";

describe("scheduler catalog listings (unit)", () => {
  it("counts as loaded only once both functions and environments were listed", () => {
    const catalog = new Catalog(new FakeRegistry());
    expect(catalog.listed("functions", [fnObj("hello")])).to.equal(false);
    expect(catalog.loaded).to.equal(false);
    expect(catalog.listed("environments", [envObj("node")])).to.equal(true);
    expect(catalog.resolveCached("default", "hello")?.env.metadata.name).to.equal("node");
  });

  it("keeps a newer revision an event brought over an older listing", () => {
    const catalog = new Catalog(new FakeRegistry());
    catalog.putFunction(fnObj("hello", { revision: 3 }));
    catalog.listed("functions", [fnObj("hello", { revision: 2 })]);
    expect(catalog.fn("default", "hello")?.metadata.revision).to.equal(3);
  });

  it("keeps only objects of the listed kind", () => {
    const catalog = new Catalog(new FakeRegistry());
    catalog.listed("functions", [envObj("node")] as never);
    expect(catalog.env("default", "node")).to.equal(undefined);
  });
});
