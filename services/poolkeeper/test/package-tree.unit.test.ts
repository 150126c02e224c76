import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, constants, existsSync, openSync, writeSync } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { expect } from "chai";
import { ArchiveCache } from "../src/archive-cache";
import { TREE_MAX_ENTRIES } from "../src/package-tree";
import type { BlobStore } from "../src/specialize-source";

interface Entry {
  path: string;
  type?: "File" | "Directory" | "SymbolicLink" | "Link" | "FIFO";
  body?: string | Buffer;
  mode?: number;
  linkpath?: string;
}

const TYPEFLAG = { File: "0", Link: "1", SymbolicLink: "2", FIFO: "6", Directory: "5" } as const;

/** One ustar header, written here (modes included: setuid bits, no execute bit). */
function header(e: Entry, size: number): Buffer {
  const h = Buffer.alloc(512);
  const put = (at: number, len: number, v: string) => h.write(v, at, len, "latin1");
  const octal = (at: number, len: number, n: number) =>
    put(at, len, `${n.toString(8).padStart(len - 1, "0")}\0`);
  put(0, 100, e.path);
  octal(100, 8, e.mode ?? (e.type === "Directory" ? 0o755 : 0o644));
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, size);
  octal(136, 12, 0);
  put(148, 8, " ".repeat(8));
  put(156, 1, TYPEFLAG[e.type ?? "File"]);
  if (e.linkpath !== undefined) put(157, 100, e.linkpath);
  put(257, 6, "ustar\0");
  put(263, 2, "00");
  let sum = 0;
  for (const b of h) sum += b;
  put(148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

/** A gzip'd tar of exactly these entries. */
function tarGz(entries: Entry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const data = Buffer.from(e.body ?? "");
    const size = (e.type ?? "File") === "File" ? data.length : 0;
    blocks.push(header(e, size));
    if (size > 0) blocks.push(data, Buffer.alloc((512 - (size % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

const digestOf = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

const GOOD: Entry[] = [
  { path: "./", type: "Directory" },
  { path: "./fizz-function", body: "#!/bin/sh\necho hi\n", mode: 0o755 },
  { path: "./fizz-function.entries", body: "{}" },
  { path: "./static/", type: "Directory" },
  { path: "./static/a.txt", body: "a" },
];

/**
 * linkPackageInto: the package extracted once by the poolkeeper and handed to an instance's
 * directory as hard links to root's read-only files (package-tree.ts). Anything the Go runtime
 * would refuse in an archive means no tree (the caller falls back to the archive, which the
 * runtime checks and refuses itself).
 */
describe("poolkeeper archive cache: the package extracted, linked into an instance's directory", () => {
  let dir: string;
  let inst: string;
  let blobs: Map<string, Buffer>;
  let gets: number;
  const store: BlobStore = {
    has: (d) => Promise.resolve(blobs.has(d)),
    getBuffer: () => Promise.resolve(null),
    get: (d) => {
      gets++;
      const b = blobs.get(d);
      return Promise.resolve(b ? Readable.from([b]) : null);
    },
  };
  const put = (b: Buffer) => {
    const d = digestOf(b);
    blobs.set(d, b);
    return d;
  };
  const cacheDir = () => path.join(dir, "archive-cache");
  /** The digest's extracted copy in the cache: `<hex>.<n>.tree`, a directory of its own per extraction. */
  const isTree = (d: string) => (f: string) =>
    f.startsWith(`${d.slice(7)}.`) && f.endsWith(".tree");
  const treeOf = async (d: string) => {
    const found = (await readdir(cacheDir())).filter(isTree(d));
    expect(found).to.have.length(1);
    return found[0]!;
  };
  const cacheWith = (maxBytes = 1 << 20, maxEntryBytes = 1 << 19) =>
    new ArchiveCache(store, { dir: cacheDir(), maxBytes, maxEntryBytes });

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "fizz-package-tree-"));
    inst = path.join(dir, "instance");
    await mkdir(inst, { mode: 0o700 });
    blobs = new Map();
    gets = 0;
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("links every file of the package, read-only, into a fresh directory of the directory's owner", async () => {
    const cache = cacheWith();
    const d = put(tarGz(GOOD));
    // The first call starts the one extraction and does not wait for it: the caller links the
    // archive this time.
    expect(await cache.linkPackageInto(d, inst)).to.equal(undefined);
    expect(await cache.extractOnce(d)).to.equal(true);
    const name = await cache.linkPackageInto(d, inst);
    expect(name).to.match(/^\.fizz-package-[0-9a-f]{32}$/);
    const root = path.join(inst, name!);
    const owner = await stat(inst);
    const top = await lstat(root);
    expect([top.isDirectory(), top.uid, top.mode & 0o777]).to.deep.equal([true, owner.uid, 0o700]);
    expect((await readdir(root)).sort()).to.deep.equal([
      "fizz-function",
      "fizz-function.entries",
      "static",
    ]);
    const bin = await lstat(path.join(root, "fizz-function"));
    // A hard link to the cache's copy: the same inode, never writable, no copy made.
    const cached = await lstat(path.join(cacheDir(), await treeOf(d), "fizz-function"));
    expect([bin.ino, bin.mode & 0o7777, bin.uid]).to.deep.equal([
      cached.ino,
      0o555,
      process.getuid?.(),
    ]);
    expect((await lstat(path.join(root, "fizz-function.entries"))).mode & 0o7777).to.equal(0o444);
    expect((await lstat(path.join(root, "static"))).uid).to.equal(owner.uid);
    expect(await readFile(path.join(root, "static/a.txt"), "utf8")).to.equal("a");
    // A second instance gets its own name, from the one extraction and the one download.
    const again = await cache.linkPackageInto(d, inst);
    expect(again).to.be.a("string").and.not.equal(name);
    expect(gets).to.equal(1);
    expect((await lstat(path.join(inst, again!, "fizz-function"))).ino).to.equal(cached.ino);
    // Built in the cache's own directory, out of the uid's reach, and renamed into place.
    expect((await readdir(cacheDir())).sort()).to.deep.equal([d.slice(7), await treeOf(d)]);
  });

  it("gives the runtime's binary its execute bit even when the archive did not, and never setuid", async () => {
    const d = put(
      tarGz([
        { path: "fizz-function", body: "x" },
        { path: "tool", body: "y", mode: 0o6755 },
        { path: "sticky", body: "z", mode: 0o1644 },
      ]),
    );
    const cache = cacheWith();
    expect(await cache.extractOnce(d)).to.equal(true);
    const name = await cache.linkPackageInto(d, inst);
    expect(name).to.be.a("string");
    const mode = async (f: string) => (await lstat(path.join(inst, name!, f))).mode & 0o7777;
    expect([await mode("fizz-function"), await mode("tool"), await mode("sticky")]).to.deep.equal([
      0o555, 0o555, 0o444,
    ]);
  });

  const refused: [string, Entry[]][] = [
    [
      "a symbolic link",
      [{ path: "link", type: "SymbolicLink", linkpath: "fizz-function" }, ...GOOD],
    ],
    [
      "a symbolic link out of the root",
      [{ path: "fizz-function", type: "SymbolicLink", linkpath: "/etc/passwd" }],
    ],
    ["a hard link", [...GOOD, { path: "copy", type: "Link", linkpath: "fizz-function" }]],
    ["a '..' path", [{ path: "../escape", body: "x" }]],
    ["a '..' inside a path", [{ path: "static/../../escape", body: "x" }]],
    ["an absolute path", [{ path: "/tmp/escape", body: "x" }]],
    ["a FIFO", [{ path: "fifo", type: "FIFO" }]],
    ["files over the entry cap", [{ path: "big", body: Buffer.alloc((1 << 19) + 1) }]],
    [
      `more than ${TREE_MAX_ENTRIES} entries`,
      Array.from({ length: TREE_MAX_ENTRIES + 1 }, (_, i) => ({ path: `f${i}`, body: "x" })),
    ],
  ];
  for (const [what, entries] of refused) {
    it(`makes no tree of an archive with ${what}, and leaves nothing in the directory`, async () => {
      const archive = tarGz(entries);
      // The cap is on the extracted bytes; the gzip'd archive itself is still cacheable.
      const d = put(archive);
      const cache = cacheWith(1 << 22, 1 << 19);
      expect(await cache.extractOnce(d)).to.equal(false);
      expect(await cache.linkPackageInto(d, inst)).to.equal(undefined);
      expect(await readdir(inst)).to.deep.equal([]);
      expect((await readdir(cacheDir())).filter((f) => f.endsWith(".tree"))).to.deep.equal([]);
      expect(await readdir(dir)).to.deep.equal(["archive-cache", "instance"]);
      // The archive itself is still handed over as before: the runtime checks and refuses it.
      expect(await cache.linkInto(d, inst)).to.be.a("string");
    });
  }

  it("makes no tree of a cached archive changed on disk, and drops it", async () => {
    const cache = cacheWith();
    const d = put(tarGz(GOOD));
    expect(await cache.linkInto(d, inst)).to.be.a("string");
    const entry = path.join(cacheDir(), d.slice(7));
    await rm(entry);
    await writeFile(entry, tarGz([...GOOD, { path: "extra", body: "evil" }]));
    expect(await cache.extractOnce(d)).to.equal(false);
    expect(cache.size.entries).to.equal(0);
    expect(await readdir(inst)).to.have.length(1); // the archive's link above, nothing more
    expect((await readdir(cacheDir())).filter((f) => f.endsWith(".tree"))).to.deep.equal([]);
  });

  it("removes the extracted copy with its entry when the cache evicts it", async () => {
    const a = put(tarGz([...GOOD, { path: "data", body: randomBytes(100_000) }]));
    const b = put(tarGz([{ path: "fizz-function", body: randomBytes(300_000) }]));
    // a's archive and tree (~200 kB) and b's (~600 kB) are over the cache's bytes: a goes.
    const cache = cacheWith(700_000, 350_000);
    expect(await cache.extractOnce(a)).to.equal(true);
    await treeOf(a);
    expect(await cache.extractOnce(b)).to.equal(true);
    expect(await cache.linkPackageInto(b, inst)).to.be.a("string");
    expect(cache.size.entries).to.equal(1);
    // The removal is not awaited by the eviction: wait for it (bounded), then check what is left.
    const gone = (names: string[]) => !names.some((n) => n.startsWith(a.slice(7)));
    for (let i = 0; i < 500 && !gone(await readdir(cacheDir())); i++)
      await new Promise((r) => setTimeout(r, 10));
    const left = await readdir(cacheDir());
    expect(left.sort()).to.deep.equal([b.slice(7), await treeOf(b)]);
  });

  it("an extraction whose entry was dropped and downloaded again meanwhile leaves no tree and no bytes", async () => {
    const a = put(tarGz([...GOOD, { path: "data", body: randomBytes(100_000) }]));
    const b = put(tarGz([{ path: "fizz-function", body: randomBytes(300_000) }]));
    const sizeA = blobs.get(a)!.length;
    const sizeB = blobs.get(b)!.length;
    // a and b's archives fit apart, not together: b's download evicts a.
    const cache = cacheWith(sizeA + sizeB - 1, 350_000);
    for await (const _ of (await cache.get(a))!);
    // The cached file becomes a FIFO this test writes: the extraction's hash waits on it, so the
    // drop and the new download happen, in order, while that extraction is under way.
    const entry = path.join(cacheDir(), a.slice(7));
    await rm(entry);
    execFileSync("mkfifo", ["-m", "0444", entry]);
    const writer = openSync(entry, constants.O_RDWR);
    const stale = cache.extractOnce(a);
    for await (const _ of (await cache.get(b))!); // evicts a
    while (existsSync(entry)) await new Promise((r) => setImmediate(r)); // the drop's unlink
    for await (const _ of (await cache.get(a))!); // a downloaded again, a regular file
    writeSync(writer, blobs.get(a)!);
    closeSync(writer);
    expect(await stale).to.equal(false);
    // Nothing of the stale extraction is counted or left on disk: a's entry is its archive only.
    expect(cache.size.bytes).to.equal(sizeA);
    expect((await readdir(cacheDir())).filter((f) => f.endsWith(".tree"))).to.deep.equal([]);
    // And a's own extraction goes ahead as usual.
    expect(await cache.extractOnce(a)).to.equal(true);
    expect(await cache.linkPackageInto(a, inst)).to.be.a("string");
  });

  it("makes no tree for a directory that is not there", async () => {
    const d = put(tarGz(GOOD));
    const cache = cacheWith();
    expect(await cache.extractOnce(d)).to.equal(true);
    expect(await cache.linkPackageInto(d, path.join(dir, "gone"))).to.equal(undefined);
    await writeFile(path.join(dir, "file"), "");
    expect(await cache.linkPackageInto(d, path.join(dir, "file"))).to.equal(undefined);
    expect((await readdir(dir)).sort()).to.deep.equal(["archive-cache", "file", "instance"]);
    // Nothing staged is left in the cache's directory either.
    expect((await readdir(cacheDir())).sort()).to.deep.equal([d.slice(7), await treeOf(d)]);
  });
});
