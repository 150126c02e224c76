import { expect } from "chai";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { lstat, mkdtemp, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ArchiveError, extractArchive, type ArchiveLimits } from "@fizz/kit/archive";
import { tar, tarGz, zip, type TarEntry, type ZipEntry } from "./archive-builders";

describe("archive extraction", () => {
  let work: string;
  let n = 0;

  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), "fizz-archive-"));
  });
  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  async function extract(bytes: Buffer, limits?: Partial<ArchiveLimits>) {
    n += 1;
    const path = join(work, `a${n}.bin`);
    await writeFile(path, bytes);
    const dest = join(work, `out${n}`);
    return { dest, result: await extractArchive({ path }, dest, limits) };
  }

  /** Extraction fails with ARCHIVE_UNSAFE naming the entry and rule, and leaves no directory. */
  async function refused(
    bytes: Buffer,
    entry: string,
    rule: string,
    limits?: Partial<ArchiveLimits>,
  ) {
    n += 1;
    const path = join(work, `a${n}.bin`);
    await writeFile(path, bytes);
    const dest = join(work, `out${n}`);
    let caught: unknown;
    try {
      await extractArchive({ path }, dest, limits);
    } catch (err) {
      caught = err;
    }
    expect(caught, "refused").to.be.instanceOf(ArchiveError);
    const err = caught as ArchiveError;
    expect(err.code).to.equal("ARCHIVE_UNSAFE");
    expect(err.status).to.equal(400);
    expect(err.entry, `${err.rule} ${String(err.cause)}`).to.equal(entry);
    expect(err.rule).to.equal(rule);
    expect(err.message).to.equal(`entry ${JSON.stringify(entry)}: ${rule}`);
    expect(existsSync(dest), "destination removed").to.equal(false);
  }

  const t = (entries: TarEntry[]) => tarGz(entries);
  const z = (entries: ZipEntry[]) => zip(entries);

  describe("happy paths", () => {
    it("extracts a tar.gz with nested dirs, an internal symlink and safe permissions", async () => {
      const { dest, result } = await extract(
        t([
          { name: "app/", type: "5", mode: 0o777 },
          { name: "app/lib/util.js", data: "util", mode: 0o666 },
          { name: "app/bin/run", data: "#!/bin/sh\n", mode: 0o4777 },
          { name: "app/main.js", data: "main", mode: 0o2644 },
          { name: "app/node_modules/.bin/util", type: "2", linkname: "../../lib/util.js" },
          { name: "app/copy.js", type: "1", linkname: "app/main.js" },
        ]),
      );
      expect(result).to.deep.equal({ files: 6, totalBytes: 4 + 10 + 4 });
      expect(await readFile(join(dest, "app/lib/util.js"), "utf8")).to.equal("util");
      expect(await readFile(join(dest, "app/node_modules/.bin/util"), "utf8")).to.equal("util");
      expect(await readlink(join(dest, "app/node_modules/.bin/util"))).to.equal(
        "../../lib/util.js",
      );
      expect(await readFile(join(dest, "app/copy.js"), "utf8")).to.equal("main");
      const run = (await stat(join(dest, "app/bin/run"))).mode;
      expect(run & 0o7000, "no setuid/setgid/sticky").to.equal(0);
      expect(run & 0o100, "owner exec kept").to.equal(0o100);
      for (const f of ["app/lib/util.js", "app/bin/run", "app/main.js"]) {
        expect((await stat(join(dest, f))).mode & 0o7022, f).to.equal(0);
      }
      expect((await stat(join(dest, "app"))).mode & 0o7022).to.equal(0);
    });

    it("extracts a plain tar", async () => {
      const { dest, result } = await extract(tar([{ name: "a/b/c.txt", data: "c" }]));
      expect(result).to.deep.equal({ files: 1, totalBytes: 1 });
      expect(await readFile(join(dest, "a/b/c.txt"), "utf8")).to.equal("c");
    });

    it("extracts a zip with nested dirs, a deflated entry, an internal symlink and safe permissions", async () => {
      const big = "hello ".repeat(1000);
      const { dest, result } = await extract(
        z([
          { name: "pkg/", mode: 0o040777 },
          { name: "pkg/src/index.js", data: big, deflate: true, mode: 0o100666 },
          { name: "pkg/run.sh", data: "#!/bin/sh\n", mode: 0o104755 },
          { name: "pkg/link.js", data: "src/index.js", mode: 0o120777 },
          { name: "pkg/readme.txt", data: "hi" },
        ]),
      );
      expect(result).to.deep.equal({ files: 5, totalBytes: big.length + 10 + 2 });
      expect(await readFile(join(dest, "pkg/src/index.js"), "utf8")).to.equal(big);
      expect((await lstat(join(dest, "pkg/link.js"))).isSymbolicLink()).to.equal(true);
      expect(await readFile(join(dest, "pkg/link.js"), "utf8")).to.equal(big);
      expect((await stat(join(dest, "pkg/src/index.js"))).mode & 0o7022).to.equal(0);
      const run = (await stat(join(dest, "pkg/run.sh"))).mode;
      expect(run & 0o7000).to.equal(0);
      expect(run & 0o100).to.equal(0o100);
    });

    it("refuses to extract into a directory that already exists", async () => {
      const path = join(work, "x.tar");
      await writeFile(path, tar([{ name: "x", data: "x" }]));
      const err = await extractArchive({ path }, work).catch((e: unknown) => e);
      expect((err as { code?: string }).code).to.equal("VALIDATION_FAILED");
      expect(existsSync(work)).to.equal(true);
    });
  });

  describe("refusals", () => {
    it("path traversal (tar)", () =>
      refused(
        t([
          { name: "ok.txt", data: "x" },
          { name: "../x", data: "x" },
        ]),
        "../x",
        "path escapes the archive root",
      ));

    it("path traversal in the middle (zip)", () =>
      refused(z([{ name: "a/../../x", data: "x" }]), "a/../../x", "path escapes the archive root"));

    it("absolute path (tar)", () =>
      refused(t([{ name: "/etc/passwd", data: "x" }]), "/etc/passwd", "absolute path"));

    it("Windows drive letter (zip)", () =>
      refused(z([{ name: "C:/x.txt", data: "x" }]), "C:/x.txt", "absolute path"));

    it("backslashes (zip)", () =>
      refused(z([{ name: "..\\x.txt", data: "x" }]), "..\\x.txt", "backslash in path"));

    it("symlink out of the root (tar)", () =>
      refused(
        t([{ name: "a/l", type: "2", linkname: "../../etc" }]),
        "a/l",
        "symlink target escapes the archive root",
      ));

    it("absolute symlink (zip)", () =>
      refused(
        z([{ name: "l", data: "/etc/passwd", mode: 0o120777 }]),
        "l",
        "symlink target escapes the archive root",
      ));

    it("symlink climbing through another symlink (s -> ., t -> s/..)", () =>
      refused(
        t([
          { name: "s", type: "2", linkname: "." },
          { name: "t", type: "2", linkname: "s/.." },
        ]),
        "t",
        "symlink target escapes the archive root",
      ));

    it("hard link out of the root", () =>
      refused(
        t([{ name: "h", type: "1", linkname: "../../etc/passwd" }]),
        "h",
        "hard link target is not an extracted file",
      ));

    it("hard link to something not extracted", () =>
      refused(
        t([{ name: "h", type: "1", linkname: "missing" }]),
        "h",
        "hard link target is not an extracted file",
      ));

    it("character device (tar)", () =>
      refused(t([{ name: "dev", type: "3" }]), "dev", "device file, FIFO or socket"));

    it("FIFO (tar)", () =>
      refused(t([{ name: "fifo", type: "6" }]), "fifo", "device file, FIFO or socket"));

    it("socket (zip)", () =>
      refused(
        z([{ name: "sock", data: "", mode: 0o140644 }]),
        "sock",
        "device file, FIFO or socket",
      ));

    it("writing through an earlier symlink", () =>
      refused(
        t([
          { name: "sub/", type: "5" },
          { name: "d", type: "2", linkname: "sub" },
          { name: "d/x", data: "x" },
        ]),
        "d/x",
        "path passes through a symlink or file",
      ));

    it("a duplicate entry over an earlier symlink", () =>
      refused(
        t([
          { name: "f", data: "x" },
          { name: "l", type: "2", linkname: "f" },
          { name: "l", data: "overwrite" },
        ]),
        "l",
        "duplicate entry",
      ));

    it("total size over the limit, counted while streaming", () =>
      refused(
        t([
          { name: "a", data: Buffer.alloc(600) },
          { name: "b", data: Buffer.alloc(600) },
        ]),
        "b",
        "total size over the limit",
        { maxTotalBytes: 1000 },
      ));

    it("too many files", () =>
      refused(
        z([
          { name: "1", data: "1" },
          { name: "2", data: "2" },
          { name: "3", data: "3" },
        ]),
        "3",
        "too many files",
        { maxFiles: 2 },
      ));

    it("zip bomb: compression ratio over the limit", () =>
      refused(
        z([{ name: "zeros", data: Buffer.alloc(8 * 1024 * 1024), deflate: true }]),
        "zeros",
        "compression ratio over the limit",
      ));

    it("tar.gz bomb: compression ratio over the limit", () =>
      refused(
        t([{ name: "zeros", data: Buffer.alloc(8 * 1024 * 1024) }]),
        "zeros",
        "compression ratio over the limit",
      ));

    it("entry name too long", () =>
      refused(t([{ name: "x".repeat(90) }]), "x".repeat(90), "name too long", {
        maxEntryNameLength: 64,
      }));

    it("an unknown format", () =>
      refused(Buffer.from("not an archive"), `a${n + 1}.bin`, "unknown archive format"));

    it("a truncated tar.gz, cut inside a file", () =>
      refused(
        tarGz([{ name: "a", data: randomBytes(200_000) }]).subarray(0, 100_000),
        `a${n + 1}.bin`,
        "malformed archive",
      ));

    it("a truncated zip", () =>
      refused(
        zip([{ name: "a", data: randomBytes(2000), deflate: true }]).subarray(0, 1000),
        `a${n + 1}.bin`,
        "malformed archive",
      ));
  });
});
