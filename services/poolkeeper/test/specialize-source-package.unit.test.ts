import { Readable } from "node:stream";
import type { SpecializeRequest } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { expect } from "chai";
import { CodeCache } from "../src/code-cache";
import { loadSource, type BlobStore } from "../src/specialize-source";

const DIGEST = `sha256:${"a".repeat(64)}`;
const req: SpecializeRequest = {
  environment: { namespace: "default", name: "go" },
  function: { namespace: "default", name: "hello", revision: 2 },
  archive: { digest: DIGEST, size: 6_000_000 },
  concurrency: 1,
};
const config = { secrets: {}, configmaps: {} };

/** The store at its interface: which of the two hand-overs it offers, and the calls made. */
function storeWith(pkg: string | undefined, file: string | undefined) {
  const calls: string[] = [];
  const store: BlobStore = {
    has: () => Promise.resolve(true),
    getBuffer: () => Promise.resolve(null),
    get: () => {
      calls.push("get");
      return Promise.resolve(Readable.from([Buffer.from("archive")]));
    },
    linkPackageInto: (_d, dir) => {
      calls.push(`package ${dir}`);
      return Promise.resolve(pkg);
    },
    linkInto: (_d, dir) => {
      calls.push(`file ${dir}`);
      return Promise.resolve(file);
    },
  };
  return { store, calls };
}

describe("specialize source: the package handed to an instance's own directory", () => {
  const deps = (store: BlobStore) => ({ store, cache: new CodeCache(), logger: silentLogger() });
  const PKG = `.fizz-package-${"1".repeat(32)}`;
  const FILE = `.fizz-archive-${"2".repeat(32)}`;

  it("names the extracted package when the cache has it, with no body", async () => {
    const { store, calls } = storeWith(PKG, FILE);
    const source = await loadSource(req, deps(store));
    const payload = await source.payload({ id: "i1", privateDir: "/w/i1" }, config);
    expect(payload).to.nested.include({ "meta.archiveFile": PKG, size: 0 });
    expect(calls).to.deep.equal(["package /w/i1"]);
  });

  it("links the archive when there is no extracted package (yet)", async () => {
    const { store, calls } = storeWith(undefined, FILE);
    const source = await loadSource(req, deps(store));
    const payload = await source.payload({ id: "i1", privateDir: "/w/i1" }, config);
    expect(payload).to.nested.include({ "meta.archiveFile": FILE, size: 0 });
    expect(calls).to.deep.equal(["package /w/i1", "file /w/i1"]);
  });

  it("streams the archive to an instance without a private directory", async () => {
    const { store, calls } = storeWith(PKG, FILE);
    const source = await loadSource(req, deps(store));
    const payload = await source.payload({ id: "i1" }, config);
    expect(payload).to.not.have.nested.property("meta.archiveFile");
    expect(calls).to.deep.equal(["get"]);
  });
});
