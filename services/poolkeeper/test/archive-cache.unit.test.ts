import { createHash } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { FizzError } from "@fizz/events";
import { expect } from "chai";
import { ArchiveCache } from "../src/archive-cache";
import type { BlobStore } from "../src/specialize-source";

const digestOf = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** The Object Store at its interface: counts reads; `lie` serves other bytes under a digest. */
class FakeStore implements BlobStore {
  readonly blobs = new Map<string, Buffer>();
  gets = 0;
  has(digest: string) {
    return Promise.resolve(this.blobs.has(digest));
  }
  getBuffer(digest: string) {
    return Promise.resolve(this.blobs.get(digest) ?? null);
  }
  async get(digest: string) {
    this.gets++;
    // A tick, so concurrent readers really overlap.
    await new Promise((r) => setTimeout(r, 5));
    const blob = this.blobs.get(digest);
    return blob ? Readable.from([blob.subarray(0, 1000), blob.subarray(1000)]) : null;
  }
  put(b: Buffer): string {
    const d = digestOf(b);
    this.blobs.set(d, b);
    return d;
  }
}

/** Everything a stream gives, or the error it ends with. */
async function drain(s: Readable | null): Promise<{ bytes: Buffer; error?: FizzError }> {
  if (!s) throw new Error("no stream");
  const chunks: Buffer[] = [];
  try {
    for await (const c of s as AsyncIterable<Buffer>) chunks.push(c);
  } catch (err) {
    return { bytes: Buffer.concat(chunks), error: err as FizzError };
  }
  return { bytes: Buffer.concat(chunks) };
}

describe("poolkeeper archive cache: package archives on local disk by digest", () => {
  let dir: string;
  let store: FakeStore;
  const blob = (n: number, fill: number) => Buffer.alloc(n, fill);
  const cacheWith = (maxBytes = 1 << 20, maxEntryBytes = 1 << 19) =>
    new ArchiveCache(store, { dir: path.join(dir, "archive-cache"), maxBytes, maxEntryBytes });

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "fizz-archive-cache-"));
    store = new FakeStore();
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("reads the store once per digest, then serves the same bytes from a private (0700) directory", async () => {
    const cache = cacheWith();
    const a = blob(50_000, 1);
    const d = store.put(a);
    expect((await drain(await cache.get(d))).bytes.equals(a)).to.equal(true);
    expect((await drain(await cache.get(d))).bytes.equals(a)).to.equal(true);
    expect(store.gets).to.equal(1);
    expect((await stat(path.join(dir, "archive-cache"))).mode & 0o777).to.equal(0o700);
    expect(await cache.has(d)).to.equal(true);
  });

  it("shares one store read among concurrent specializations of the same digest", async () => {
    const cache = cacheWith();
    const a = blob(80_000, 2);
    const d = store.put(a);
    const got = await Promise.all([1, 2, 3, 4].map(async () => drain(await cache.get(d))));
    for (const g of got) expect(g.bytes.equals(a)).to.equal(true);
    expect(store.gets).to.equal(1);
  });

  it("evicts the least recently used archives past its byte budget and leaves no temp files", async () => {
    const cache = cacheWith(100_000);
    const [a, b, c] = [blob(40_000, 3), blob(40_000, 4), blob(40_000, 5)];
    const [da, db, dc] = [store.put(a), store.put(b), store.put(c)];
    await drain(await cache.get(da));
    await drain(await cache.get(db));
    await drain(await cache.get(da)); // a is now the most recent
    await drain(await cache.get(dc)); // over budget: b goes
    expect(cache.size).to.deep.equal({ entries: 2, bytes: 80_000 });
    store.gets = 0;
    await drain(await cache.get(da));
    expect(store.gets).to.equal(0);
    await drain(await cache.get(db));
    expect(store.gets).to.equal(1);
    const files = await readdir(path.join(dir, "archive-cache"));
    expect(files.filter((f) => f.startsWith(".tmp"))).to.deep.equal([]);
  });

  it("does not keep archives over the entry limit, and is off with 0 bytes", async () => {
    const big = cacheWith(1 << 20, 10_000);
    const d = store.put(blob(20_000, 6));
    expect((await drain(await big.get(d))).bytes.length).to.equal(20_000);
    expect(big.size.entries).to.equal(0);
    const off = cacheWith(0);
    await drain(await off.get(d));
    await drain(await off.get(d));
    expect(off.size.entries).to.equal(0);
  });

  it("never caches store bytes that do not hash to the digest (the store's own answer goes through)", async () => {
    const cache = cacheWith();
    const good = blob(30_000, 7);
    const d = digestOf(good);
    store.blobs.set(d, blob(30_000, 8)); // tampered in the store
    const got = await drain(await cache.get(d));
    expect(digestOf(got.bytes)).to.not.equal(d); // the runtime refuses these (it checks the digest)
    expect(cache.size.entries).to.equal(0);
    expect(await cache.get(digestOf(blob(10, 9)))).to.equal(null);
  });

  it("attack: a cache file changed on disk is never sent whole, fails with DIGEST_MISMATCH, is dropped, and the next read goes to the store", async () => {
    const cache = cacheWith();
    const a = blob(200_000, 10);
    const d = store.put(a);
    await drain(await cache.get(d));
    const file = path.join(dir, "archive-cache", d.slice("sha256:".length));
    const evil = Buffer.from(a);
    evil[150_000] = 0xff;
    await writeFile(file, evil);
    const got = await drain(await cache.get(d));
    expect(got.error?.code).to.equal("DIGEST_MISMATCH");
    expect(got.error?.field).to.equal("archive.digest");
    expect(got.bytes.length).to.be.lessThan(a.length); // the last bytes were withheld
    expect(cache.size.entries).to.equal(0);
    store.gets = 0;
    expect((await drain(await cache.get(d))).bytes.equals(a)).to.equal(true);
    expect(store.gets).to.equal(1);
  });

  it("attack: a cache file truncated or removed on disk fails that read and is dropped", async () => {
    const cache = cacheWith();
    const a = blob(100_000, 11);
    const d = store.put(a);
    await drain(await cache.get(d));
    const file = path.join(dir, "archive-cache", d.slice("sha256:".length));
    await writeFile(file, a.subarray(0, 10));
    expect((await drain(await cache.get(d))).error?.code).to.equal("DIGEST_MISMATCH");
    await drain(await cache.get(d)); // back from the store
    await rm(file);
    expect((await drain(await cache.get(d))).error).to.not.equal(undefined);
    expect(cache.size.entries).to.equal(0);
  });

  describe("linkInto: the cached archive handed to an instance's directory as a file", () => {
    it("links the verified entry under a fresh name: the same inode, read-only, nothing copied", async () => {
      const b = blob(4000, 7);
      const d = store.put(b);
      const cache = cacheWith();
      const inst = await mkdtemp(path.join(dir, "inst-"));
      const name = await cache.linkInto(d, inst);
      expect(name).to.match(/^\.fizz-archive-[0-9a-f]{32}$/);
      const linked = await stat(path.join(inst, name!));
      const entry = await stat(path.join(dir, "archive-cache", d.slice(7)));
      expect(linked.ino).to.equal(entry.ino);
      expect(linked.mode & 0o777).to.equal(0o444);
      expect(await readFile(path.join(inst, name!))).to.deep.equal(b);
      // Two instances never share a name; the store was read once.
      expect(await cache.linkInto(d, inst)).to.not.equal(name);
      expect(store.gets).to.equal(1);
    });

    it("never links bytes that are not the digest (the store lied): nothing cached, nothing linked", async () => {
      const d = store.put(blob(4000, 1));
      store.blobs.set(d, blob(4000, 2));
      const inst = await mkdtemp(path.join(dir, "inst-"));
      expect(await cacheWith().linkInto(d, inst)).to.equal(undefined);
      expect(await readdir(inst)).to.deep.equal([]);
    });

    it("gives up, touching nothing, where the directory is not there (the caller streams instead)", async () => {
      const d = store.put(blob(4000, 3));
      expect(await cacheWith().linkInto(d, path.join(dir, "gone"))).to.equal(undefined);
    });

    it("makes the entry readable by the instance's uid whatever the poolkeeper's umask (0077 under a hardened unit)", async () => {
      const d = store.put(blob(4000, 5));
      const inst = await mkdtemp(path.join(dir, "inst-"));
      const old = process.umask(0o077);
      let name: string | undefined;
      try {
        name = await cacheWith().linkInto(d, inst);
      } finally {
        process.umask(old);
      }
      // 0400 would let only root read it: the runtime's open fails and every first attempt
      // costs a warm instance.
      expect((await stat(path.join(inst, name!))).mode & 0o777).to.equal(0o444);
    });

    it("asks the store nothing to link an archive too big to cache: the stream that follows reads it as before", async () => {
      const big = blob(3000, 6);
      const d = store.put(big);
      const cache = cacheWith(1 << 20, 2000);
      const inst = await mkdtemp(path.join(dir, "inst-"));
      expect(await cache.linkInto(d, inst, big.length)).to.equal(undefined);
      expect((await drain(await cache.get(d))).bytes).to.deep.equal(big);
      // get's own attempt to cache it, then the store's stream. Before: linkInto downloaded (and
      // threw away) up to maxEntryBytes first, one more read of up to 256 MB per specialize.
      expect(store.gets).to.equal(2);
    });

    it("is off with the cache (maxBytes 0)", async () => {
      const d = store.put(blob(4000, 4));
      const inst = await mkdtemp(path.join(dir, "inst-"));
      expect(await cacheWith(0).linkInto(d, inst)).to.equal(undefined);
    });
  });
});
