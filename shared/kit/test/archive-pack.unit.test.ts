import { expect } from "chai";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Parser, type ReadEntry } from "tar";
import { FizzError } from "@fizz/events";
import { ArchiveError, canonicalize, extractArchive, packDirectory } from "@fizz/kit/archive";
import { tarGz, zip } from "./archive-builders";

/** path -> "dir" | "<mode> <sha256>" for every entry under root (links shown as "link"). */
async function snapshot(root: string, prefix = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(join(root, prefix))).sort()) {
    const rel = prefix === "" ? name : `${prefix}/${name}`;
    const st = await lstat(join(root, rel));
    if (st.isDirectory()) {
      out[rel] = "dir";
      Object.assign(out, await snapshot(root, rel));
    } else if (st.isFile()) {
      const sum = createHash("sha256")
        .update(await readFile(join(root, rel)))
        .digest("hex");
      out[rel] = `${(st.mode & 0o777).toString(8)} ${sum}`;
    } else {
      out[rel] = "other";
    }
  }
  return out;
}

interface Listed {
  path: string;
  type: string;
  mode: number | undefined;
  mtime: number | undefined;
  uid: number | undefined;
  uname: string | undefined;
}

async function list(file: string): Promise<Listed[]> {
  const entries: Listed[] = [];
  const parser = new Parser();
  parser.on("entry", (e: ReadEntry) => {
    entries.push({
      path: e.path,
      type: e.type,
      mode: e.mode,
      mtime: e.mtime?.getTime(),
      uid: e.uid,
      uname: e.uname,
    });
    e.resume();
  });
  const bytes = await readFile(file);
  await new Promise<void>((resolve, reject) => {
    parser.on("end", resolve);
    parser.on("error", reject);
    parser.end(bytes);
  });
  return entries;
}

describe("canonical archives (packDirectory, canonicalize)", () => {
  let work: string;
  let n = 0;
  const next = (what: string) => join(work, `${what}${(n += 1)}`);

  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), "fizz-pack-"));
    await chmod(work, 0o755);
  });
  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  async function tree(): Promise<string> {
    const dir = next("tree");
    await mkdir(join(dir, "lib/deep"), { recursive: true });
    await mkdir(join(dir, "empty"));
    await writeFile(join(dir, "index.js"), "module.exports = 1;\n");
    await writeFile(join(dir, "lib/util.js"), randomBytes(5000));
    await writeFile(join(dir, "lib/deep/data.bin"), Buffer.alloc(0));
    await writeFile(join(dir, "run.sh"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
    return dir;
  }

  async function upload(bytes: Buffer): Promise<string> {
    const path = next("upload");
    await writeFile(path, bytes);
    return path;
  }

  it("packs the same tree to the same bytes twice, in canonical form", async () => {
    const dir = await tree();
    const a = await packDirectory(dir, next("a"));
    const b = await packDirectory(dir, next("b"));
    expect(a.digest).to.equal(b.digest);
    expect(a.files).to.equal(4);
    expect(a.skipped).to.deep.equal([]);
    const entries = await list(join(work, `a${n - 1}`));
    expect(entries.map((e) => e.path)).to.deep.equal([
      "empty/",
      "index.js",
      "lib/",
      "lib/deep/",
      "lib/deep/data.bin",
      "lib/util.js",
      "run.sh",
    ]);
    for (const e of entries) {
      expect(["File", "Directory"]).to.include(e.type);
      expect(e.mtime, e.path).to.equal(0);
      expect(e.uid ?? 0, e.path).to.equal(0);
      expect(e.uname ?? "", e.path).to.equal("");
      const want = e.type === "Directory" || e.path === "run.sh" ? 0o755 : 0o644;
      expect(e.mode, e.path).to.equal(want);
    }
  });

  it("stores files uncompressed at gzip level 0, and the archive unpacks to the same tree", async () => {
    const dir = await tree();
    await writeFile(join(dir, "zeros.bin"), Buffer.alloc(256 * 1024));
    const deflated = await packDirectory(dir, next("deflated"));
    const storedPath = next("stored");
    const stored = await packDirectory(dir, storedPath, { gzipLevel: 0 });
    // 256 KiB of zeros deflate to a few hundred bytes; stored, they stay 256 KiB.
    expect(deflated.size).to.be.below(64 * 1024);
    expect(stored.size).to.be.above(256 * 1024);
    const out = next("unpacked");
    await extractArchive({ path: storedPath }, out);
    expect(await snapshot(out)).to.deep.equal(await snapshot(dir));
  });

  it("ignores mtimes and non-exec mode bits, but not the exec bit", async () => {
    const dir = await tree();
    const before = await packDirectory(dir, next("a"));
    await utimes(join(dir, "index.js"), new Date(2001, 1, 1), new Date(2001, 1, 1));
    await utimes(join(dir, "lib"), new Date(1999, 1, 1), new Date(1999, 1, 1));
    await chmod(join(dir, "lib/util.js"), 0o600);
    await chmod(join(dir, "run.sh"), 0o700);
    expect((await packDirectory(dir, next("b"))).digest).to.equal(before.digest);
    await chmod(join(dir, "index.js"), 0o744);
    expect((await packDirectory(dir, next("c"))).digest).to.not.equal(before.digest);
  });

  it("canonicalizes a zip and a tar.gz of the same tree to the same digest", async () => {
    const util = randomBytes(3000);
    const fromTar = await canonicalize(
      await upload(
        tarGz([
          { name: "lib/", type: "5", mode: 0o775 },
          { name: "lib/util.js", data: util, mode: 0o664 },
          { name: "run.sh", data: "#!/bin/sh\n", mode: 0o755 },
          { name: "index.js", data: "x" },
        ]),
      ),
      work,
    );
    const fromZip = await canonicalize(
      await upload(
        zip([
          { name: "run.sh", data: "#!/bin/sh\n", mode: 0o100755, deflate: true },
          { name: "index.js", data: "x" },
          { name: "lib/util.js", data: util, mode: 0o100644 },
        ]),
      ),
      work,
    );
    expect(fromZip.digest).to.equal(fromTar.digest);
    expect(fromZip.files).to.equal(3);
    const bytes = await readFile(fromTar.path);
    expect(`sha256:${createHash("sha256").update(bytes).digest("hex")}`).to.equal(fromTar.digest);
    expect(fromTar.size).to.equal(bytes.length);
    // Only the two canonical files are left in workDir: the extracted trees are gone.
    const left = (await readdir(work)).filter((f) => !f.startsWith("upload"));
    expect(left.sort()).to.deep.equal(
      [fromTar.path, fromZip.path].map((p) => p.slice(work.length + 1)).sort(),
    );
  });

  it("stores a symlink to a file inside as a copy of that file", async () => {
    const data = randomBytes(700);
    const canon = await canonicalize(
      await upload(
        tarGz([
          { name: "conf/", type: "5" },
          { name: "conf/real.json", data },
          { name: "alias.json", type: "2", linkname: "conf/real.json" },
          { name: "conf/self.json", type: "2", linkname: "./real.json" },
        ]),
      ),
      work,
    );
    expect(canon.skipped).to.deep.equal([]);
    const out = next("out");
    await extractArchive({ path: canon.path }, out);
    for (const p of ["alias.json", "conf/self.json"]) {
      expect((await lstat(join(out, p))).isFile(), p).to.equal(true);
      expect((await readFile(join(out, p))).equals(data), p).to.equal(true);
    }
    expect((await list(canon.path)).every((e) => e.type !== "SymbolicLink")).to.equal(true);
  });

  it("skips links that escape, dangle or point at directories, and FIFOs", async () => {
    const dir = await tree();
    const outside = next("outside");
    await writeFile(outside, "secret");
    await symlink(outside, join(dir, "abs-escape"));
    await symlink("../../etc/passwd", join(dir, "lib/rel-escape"));
    await symlink("nowhere", join(dir, "dangling"));
    await symlink("lib", join(dir, "dir-link"));
    execFileSync("mkfifo", [join(dir, "pipe")]);
    const out = next("a");
    const packed = await packDirectory(dir, out);
    expect(packed.skipped.sort()).to.deep.equal(
      ["abs-escape", "dangling", "dir-link", "lib/rel-escape", "pipe"].sort(),
    );
    const paths = (await list(out)).map((e) => e.path);
    for (const p of packed.skipped) expect(paths).to.not.include(p);
  });

  it("refuses output over maxBytes with PAYLOAD_TOO_LARGE and leaves no file", async () => {
    const dir = next("big");
    await mkdir(dir);
    await writeFile(join(dir, "noise.bin"), randomBytes(256 * 1024));
    const out = next("out");
    const err = await packDirectory(dir, out, { maxBytes: 100_000 }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(FizzError);
    expect((err as FizzError).code).to.equal("PAYLOAD_TOO_LARGE");
    expect((err as FizzError).message).to.contain("100000");
    expect(existsSync(out)).to.equal(false);
  });

  it("refuses links that multiply one file past maxTotalBytes", async () => {
    const entries = [{ name: "big.bin", data: randomBytes(600 * 1024) }];
    for (let i = 0; i < 10; i += 1) {
      entries.push({ name: `copy${i}`, type: "2", linkname: "big.bin" } as never);
    }
    const err = await canonicalize(await upload(tarGz(entries)), work, {
      maxTotalBytes: 2 * 1024 * 1024,
    }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(ArchiveError);
    expect((err as ArchiveError).rule).to.equal("total size over the limit");
    expect((await readdir(work)).filter((f) => !f.startsWith("upload"))).to.deep.equal([]);
  });

  it("passes extraction refusals through unchanged and leaves nothing behind", async () => {
    const err = await canonicalize(
      await upload(tarGz([{ name: "../evil.sh", data: "x" }])),
      work,
    ).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(ArchiveError);
    expect((err as ArchiveError).entry).to.equal("../evil.sh");
    expect((err as ArchiveError).rule).to.equal("path escapes the archive root");
    expect((await readdir(work)).filter((f) => !f.startsWith("upload"))).to.deep.equal([]);
  });

  it("re-extracts to an identical tree, long names included", async () => {
    const dir = await tree();
    const long = `${"d".repeat(90)}/${"e".repeat(90)}/${"f".repeat(120)}.txt`;
    await mkdir(join(dir, long, ".."), { recursive: true });
    await writeFile(join(dir, long), "deep");
    await chmod(join(dir, "lib/util.js"), 0o600);
    const out = next("a");
    await packDirectory(dir, out);
    const back = next("x");
    await extractArchive({ path: out }, back);
    const want = await snapshot(dir);
    want["lib/util.js"] = want["lib/util.js"]!.replace(/^600/, "644");
    expect(await snapshot(back)).to.deep.equal(want);
  });

  it("never overwrites an existing output file", async () => {
    const dir = await tree();
    const out = next("a");
    await writeFile(out, "keep me");
    const err = await packDirectory(dir, out).catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).to.equal("EEXIST");
    expect(await readFile(out, "utf8")).to.equal("keep me");
  });
});
