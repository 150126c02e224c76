import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { expect } from "chai";
import { setTimeout as sleep } from "node:timers/promises";
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
    // Each as a process started after the files were written would compute it. Date.now() is
    // floored to the millisecond while file times carry nanoseconds (fine-grained ones on Linux
    // 6.13+): a file written in the same millisecond would read as written after that "start".
    const fpOf = (...p: string[]) => codeFingerprint(url(...p), Date.now() + 1);
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
