import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { expect } from "chai";
import { setTimeout as sleep } from "node:timers/promises";
import { writeCodeManifest } from "../../../scripts/lib/service-build.mjs";
import { codeFingerprint, knownSealKey } from "../src/known-fingerprint";

/**
 * The fingerprint persisted known texts are kept under (known-fingerprint.ts): any change to the
 * code that decides readability must change it, so a digest learnt by one build is never trusted
 * by another; and the seal key comes only from the secrets key file.
 */
describe("registry: known texts' code fingerprint and seal key", () => {
  let dir: string;
  const url = (...p: string[]) => pathToFileURL(join(dir, ...p)).href;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "fizz-fp-"));
    await mkdir(join(dir, "dist", "chunks"), { recursive: true });
    await writeFile(join(dir, "dist", "registry.mjs"), "entry");
    await writeFile(join(dir, "dist", "chunks", "chunk-A.mjs"), "schemas v1");
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("bundled: the same for the entry and its chunks, changed by any chunk's change", async () => {
    // Each as a process started after the files were written would compute it.
    const fpOf = (...p: string[]) => codeFingerprint(url(...p), Date.now());
    const fp = await fpOf("dist", "registry.mjs");
    expect(fp).to.match(/^[0-9a-f]{32}$/);
    expect(await fpOf("dist", "chunks", "chunk-A.mjs")).to.equal(fp);
    // Source maps are not code.
    await writeFile(join(dir, "dist", "chunks", "chunk-A.mjs.map"), "{}");
    expect(await fpOf("dist", "registry.mjs")).to.equal(fp);
    await writeFile(join(dir, "dist", "chunks", "chunk-A.mjs"), "schemas v2");
    const changed = await fpOf("dist", "registry.mjs");
    expect(changed).to.not.equal(fp);
    await writeFile(join(dir, "dist", "chunks", "chunk-B.mjs"), "");
    expect(await fpOf("dist", "registry.mjs")).to.not.equal(changed);
  });

  it("none when a hashed file was written after the process loaded its code (a rebuild meanwhile)", async () => {
    // File times come from a coarse clock: keep the steps apart.
    await sleep(30);
    const loadedAt = Date.now();
    await sleep(30);
    expect(await codeFingerprint(url("dist", "registry.mjs"), loadedAt)).to.match(/^[0-9a-f]{32}$/);
    // A rebuild lands between the load and the hashing: what is hashed is not what runs, and the
    // digests this process learns must not be kept under the new build's fingerprint.
    await writeFile(join(dir, "dist", "chunks", "chunk-B.mjs"), "schemas v2");
    const err = await codeFingerprint(url("dist", "registry.mjs"), loadedAt).then(
      () => undefined,
      (e: unknown) => e as { code?: string; message: string },
    );
    expect(err?.code).to.equal("CODE_CHANGED");
    expect(err?.message).to.contain("chunk-B.mjs");
  });

  describe("bundled, with the build's manifest (dist/code-fingerprint.json)", () => {
    const manifestFile = () => join(dir, "dist", "code-fingerprint.json");
    /** The fingerprint, and why the manifest was not used (undefined: it was). */
    // Date.now() + 1: a process started after the files were written (file times are finer).
    const fingerprint = async (loadedAt = Date.now() + 1) => {
      let hashing: string | undefined;
      const fp = await codeFingerprint(url("dist", "registry.mjs"), loadedAt, (why) => {
        hashing = why;
      });
      return { fp, hashing };
    };
    /** Replaces a file as a build does: a new file renamed into place. */
    const replace = async (rel: string, text: string) => {
      await writeFile(join(dir, "dist", `${rel}.tmp`), text);
      await rename(join(dir, "dist", `${rel}.tmp`), join(dir, "dist", rel));
    };
    let hashed: string | undefined;
    beforeEach(async () => {
      hashed = (await fingerprint()).fp;
      writeCodeManifest(join(dir, "dist"));
    });

    it("takes each bundle's digest from it, reading no bundle; the same as hashing them", async () => {
      expect(await fingerprint()).to.deep.equal({ fp: hashed, hashing: undefined });
      // Its digests are what is used: one changed (the file's identity kept) changes the result.
      const m = JSON.parse(await readFile(manifestFile(), "utf8")) as {
        files: Record<string, { sha256: string }>;
      };
      m.files["chunks/chunk-A.mjs"]!.sha256 = createHash("sha256").update("other").digest("hex");
      await writeFile(manifestFile(), JSON.stringify(m));
      const lied = await fingerprint();
      expect(lied.hashing).to.equal(undefined);
      expect(lied.fp)
        .to.match(/^[0-9a-f]{32}$/)
        .and.not.equal(hashed);
    });

    it("hashes instead when a bundle was replaced since (a concurrent build), even with its size and mtime", async () => {
      await sleep(30);
      await replace("chunks/chunk-A.mjs", "schemas v2");
      const after = await fingerprint();
      expect(after.hashing).to.contain("chunk-A.mjs is newer than the manifest");
      expect(after.fp).to.not.equal(hashed);
      // What the build writes last then vouches for the new code.
      await sleep(30);
      writeCodeManifest(join(dir, "dist"));
      expect(await fingerprint()).to.deep.equal({ fp: after.fp, hashing: undefined });
      // A build's rename that landed between another's hashing and its manifest, in the same
      // clock tick as the file hashed (same mtime) and of the same size: another inode.
      const chunk = join(dir, "dist", "chunks", "chunk-A.mjs");
      const was = await stat(chunk);
      await replace("chunks/chunk-A.mjs", "schemas v3");
      await utimes(chunk, was.atime, was.mtime);
      const raced = await fingerprint();
      expect(raced.hashing).to.contain("chunk-A.mjs is not the file the manifest hashed");
      expect(raced.fp).to.not.equal(after.fp);
    });

    it("hashes instead when a bundle is newer than the manifest (a build in progress)", async () => {
      const later = new Date(Date.now() + 2000);
      await utimes(join(dir, "dist", "registry.mjs"), later, later);
      const r = await fingerprint(Date.now() + 3000);
      expect(r.hashing).to.contain("registry.mjs is newer than the manifest");
    });

    it("hashes instead when the dir holds other files than it lists, or it is missing", async () => {
      await writeFile(join(dir, "dist", "chunks", "chunk-B.mjs"), "");
      const added = await fingerprint();
      expect(added.hashing).to.contain("lists other files");
      expect(added.fp).to.not.equal(hashed);
      await rm(join(dir, "dist", "chunks", "chunk-B.mjs"));
      await rm(join(dir, "dist", "chunks", "chunk-A.mjs"));
      expect((await fingerprint()).hashing).to.contain("lists other files");
      await rm(manifestFile());
      expect((await fingerprint()).hashing).to.equal("no manifest");
    });

    it("refuses (CODE_CHANGED) a bundle or manifest written after the process started", async () => {
      await sleep(30);
      const loadedAt = Date.now();
      await sleep(30);
      expect((await fingerprint(loadedAt)).hashing).to.equal(undefined);
      writeCodeManifest(join(dir, "dist"));
      await expectChanged(fingerprint(loadedAt), "code-fingerprint.json");
      await sleep(30);
      const loadedAt2 = Date.now();
      await sleep(30);
      await replace("chunks/chunk-A.mjs", "schemas v2");
      await expectChanged(fingerprint(loadedAt2), "chunk-A.mjs");
    });
  });

  it("from sources: stable over the same tree, and none for code it cannot cover", async () => {
    const fp = await codeFingerprint();
    expect(fp).to.match(/^[0-9a-f]{32}$/);
    expect(await codeFingerprint()).to.equal(fp);
    expect(await codeFingerprint(url("dist", "registry.js"))).to.equal(undefined);
  });

  it("seal key: derived from the secrets key file, none without one", async () => {
    expect(await knownSealKey(undefined)).to.equal(undefined);
    expect(await knownSealKey(join(dir, "missing.key"))).to.equal(undefined);
    const raw = Buffer.alloc(32, 7);
    await writeFile(join(dir, "secrets.key"), raw.toString("base64") + "\n");
    const key = await knownSealKey(join(dir, "secrets.key"));
    expect(key).to.have.length(32);
    // Not the encryption key itself.
    expect(key!.equals(raw)).to.equal(false);
    expect((await knownSealKey(join(dir, "secrets.key")))!.equals(key!)).to.equal(true);
  });
});

async function expectChanged(p: Promise<unknown>, naming: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as { code?: string; message: string },
  );
  expect(err?.code).to.equal("CODE_CHANGED");
  expect(err?.message).to.contain(naming);
}
