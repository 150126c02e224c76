import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { silentLogger } from "@fizz/kit";
import { expect } from "chai";
import { Agent, request } from "undici";
import { instanceAgent } from "../src/instance-http";
import { packageArchive } from "../../../runtimes/contract/archive.js";
import { HELLO, compile, ensurePrepared } from "../../../runtimes/go/test/fixtures.js";
import { ArchiveCache } from "../src/archive-cache";
import { DEFAULT_RUNTIMES_DIR, loadConfig } from "../src/config";
import { ProcessBackend } from "../src/process-backend";
import { postSpecialize } from "../src/runtime-client";
import type { BlobStore } from "../src/specialize-source";
import { env } from "./fake-backend";

/** The backend's client for its instances; the test's own requests go over undici. */
const instancesAgent = instanceAgent();

/** Runs `sh -c script` as `uid` (no groups, no capabilities): what that instance's code could do. */
function asUid(uid: number, script: string): number | null {
  const r = spawnSync(
    "/usr/bin/setpriv",
    [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--inh-caps=-all", "sh", "-c", script],
    { stdio: "ignore" },
  );
  return r.status;
}

/**
 * The archive handed to a Go instance as a hard link into its own 0700 directory (ArchiveCache
 * .linkInto, archiveFile) under the real process backend, as root with per-instance uids: the
 * instance loads and serves from it; its own uid can read the link but never change the cached
 * copy other instances are given; another instance's uid cannot read it at all.
 */
describe("process backend: a Go instance's archive as a link in its own directory", function () {
  this.timeout(300_000);
  let workDir: string;
  let agent: Agent;
  let backend: ProcessBackend;
  let cache: ArchiveCache;
  let archive: Buffer;
  let digest: string;

  before(async function () {
    if (process.getuid?.() !== 0) this.skip(); // per-instance uids need root
    this.timeout(900_000);
    await ensurePrepared();
    archive = await packageArchive(await compile({ [HELLO.filename]: HELLO.source }));
    digest = `sha256:${createHash("sha256").update(archive).digest("hex")}`;
    workDir = await mkdtemp(path.join(tmpdir(), "fizz-pb-afile-"));
    agent = new Agent();
    const config = loadConfig({ FIZZ_WORKDIR: workDir });
    backend = new ProcessBackend({
      workDir,
      runtimesDir: DEFAULT_RUNTIMES_DIR,
      python: config.python,
      interpreters: config.interpreters,
      spawnTimeoutMs: 20_000,
      killGraceMs: 2000,
      baseEnv: config.instanceEnv,
      isolation: config.isolation,
      allowEnvCommand: false,
      agent: instancesAgent,
      logger: silentLogger(),
    });
    const store: BlobStore = {
      has: (d) => Promise.resolve(d === digest),
      getBuffer: () => Promise.resolve(null),
      get: (d) => Promise.resolve(d === digest ? Readable.from([archive]) : null),
    };
    cache = new ArchiveCache(store, {
      dir: path.join(workDir, "archive-cache"),
      maxBytes: 1 << 30,
      maxEntryBytes: 1 << 28,
    });
  });
  after(async () => {
    await backend?.close();
    await agent?.close();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it("loads and serves from the link; its uid reads it but cannot change it, another's cannot read it", async function () {
    const e = env("go", { image: "fizz/env-go" });
    const why = backend.unsupported(e);
    if (why) {
      console.log(`      (skipped: ${why})`);
      this.skip();
    }
    const inst = await backend.spawn(e, { taken: true });
    const other = await backend.spawn(e, { taken: true });
    expect(inst.uid).to.be.a("number");
    expect(other.uid).to.be.a("number").and.not.equal(inst.uid);
    const name = await cache.linkInto(digest, inst.dir!);
    expect(name).to.be.a("string");
    const file = path.join(inst.dir!, name!);
    const st = statSync(file);
    expect([st.uid, st.mode & 0o777]).to.deep.equal([0, 0o444]);
    // What the function's code, running as that uid later, could try against the cached copy.
    expect(asUid(inst.uid!, `cat '${file}' > /dev/null`)).to.equal(0);
    expect(asUid(inst.uid!, `printf x >> '${file}'`)).to.not.equal(0);
    expect(asUid(inst.uid!, `chmod 666 '${file}'`)).to.not.equal(0);
    expect(asUid(inst.uid!, `truncate -s 0 '${file}'`)).to.not.equal(0);
    expect(asUid(other.uid!, `cat '${file}' > /dev/null`)).to.not.equal(0);
    const entry = path.join(workDir, "archive-cache", digest.slice("sha256:".length));
    expect(asUid(inst.uid!, `cat '${entry}' > /dev/null`)).to.not.equal(0);

    const outcome = await postSpecialize(
      instancesAgent,
      inst.address,
      {
        meta: {
          instanceId: inst.id,
          function: { namespace: "default", name: "hello", revision: 1 },
          concurrency: 1,
          digest,
          archiveFile: name!,
        },
        archive: Readable.from([]),
        size: 0,
      },
      inst.specializeToken,
      20_000,
    );
    expect(outcome).to.deep.include({ kind: "ok" });
    const res = await request(inst.address, {
      dispatcher: agent,
      headers: { "x-fizz-instance": inst.id },
    });
    expect(await res.body.text()).to.equal("Hello, world!\n");
    // The runtime unlinked the name once it had the file open; the cached copy is whole.
    expect(() => statSync(file)).to.throw();
    expect(statSync(entry).size).to.equal(archive.length);
    await backend.kill(inst.id, "test done");
    await backend.kill(other.id, "test done");
  });
  it("runs the package the cache extracted, as links its uid can run but never change", async function () {
    const e = env("go", { image: "fizz/env-go" });
    const why = backend.unsupported(e);
    if (why) {
      console.log(`      (skipped: ${why})`);
      this.skip();
    }
    const inst = await backend.spawn(e, { taken: true });
    const other = await backend.spawn(e, { taken: true });
    expect(await cache.extractOnce(digest)).to.equal(true);
    const name = await cache.linkPackageInto(digest, inst.dir!);
    expect(name).to.match(/^\.fizz-package-[0-9a-f]{32}$/);
    const pkg = path.join(inst.dir!, name!);
    const bin = path.join(pkg, "fizz-function");
    expect(statSync(pkg).uid).to.equal(inst.uid);
    const st = statSync(bin);
    expect([st.uid, st.mode & 0o7777]).to.deep.equal([0, 0o555]);
    // What the function's code, running as that uid, could try against the file the next
    // instance of this function is given (the same inode).
    expect(asUid(inst.uid!, `test -x '${bin}' && cat '${bin}' > /dev/null`)).to.equal(0);
    expect(asUid(inst.uid!, `printf x >> '${bin}'`)).to.not.equal(0);
    expect(asUid(inst.uid!, `chmod 777 '${bin}'`)).to.not.equal(0);
    expect(asUid(inst.uid!, `truncate -s 0 '${bin}'`)).to.not.equal(0);
    expect(asUid(inst.uid!, `chown ${inst.uid} '${bin}'`)).to.not.equal(0);
    expect(asUid(other.uid!, `cat '${bin}' > /dev/null`)).to.not.equal(0);
    expect(asUid(inst.uid!, `touch '${bin}'`)).to.not.equal(0);
    // The digest's one extracted copy: `<hex>.<n>.tree` (a directory of its own per extraction).
    const hex = digest.slice("sha256:".length);
    const trees = readdirSync(path.join(workDir, "archive-cache")).filter(
      (f) => f.startsWith(`${hex}.`) && f.endsWith(".tree"),
    );
    expect(trees).to.have.length(1);
    const cached = path.join(workDir, "archive-cache", trees[0]!);
    expect(asUid(inst.uid!, `ls '${cached}'`)).to.not.equal(0);
    expect(statSync(path.join(cached, "fizz-function")).ino).to.equal(st.ino);

    const outcome = await postSpecialize(
      instancesAgent,
      inst.address,
      {
        meta: {
          instanceId: inst.id,
          function: { namespace: "default", name: "hello", revision: 1 },
          concurrency: 1,
          digest,
          archiveFile: name!,
        },
        archive: Readable.from([]),
        size: 0,
      },
      inst.specializeToken,
      20_000,
    );
    expect(outcome).to.deep.include({ kind: "ok" });
    const res = await request(inst.address, {
      dispatcher: agent,
      headers: { "x-fizz-instance": inst.id },
    });
    expect(await res.body.text()).to.equal("Hello, world!\n");
    // Renamed to its fn/; the cached copy is whole and still root's and read-only.
    expect(statSync(path.join(inst.dir!, "fn", "fizz-function")).ino).to.equal(st.ino);
    const after = statSync(path.join(cached, "fizz-function"));
    expect([after.size, after.uid, after.mode & 0o7777]).to.deep.equal([st.size, 0, 0o555]);
    await backend.kill(inst.id, "test done");
    await backend.kill(other.id, "test done");
  });
});
