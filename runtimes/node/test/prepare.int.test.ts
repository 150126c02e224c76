// runtimes/node/prepare.mjs: the one-file build the process backend launches. Built on a copy of
// the runtime (the tree's own build is left alone), with esbuild from the workspace.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  chownSync,
  cpSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { expect } from "chai";
import { ALWAYS } from "../prepare.mjs";
import { freePort, minimalEnv, waitForHealthz } from "../../contract/harness.js";

const HERE = fileURLToPath(new URL("..", import.meta.url));
const WORKSPACE_MODULES = fileURLToPath(new URL("../../../node_modules", import.meta.url));

type Prepare = typeof import("../prepare.mjs");

describe("node runtime: one-file build (prepare.mjs)", function () {
  this.timeout(60_000);
  let copy: string;
  let mod: Prepare;

  before(async () => {
    copy = mkdtempSync(join(tmpdir(), "fizz-node-prepare-"));
    // What esbuild reads, and the rest of the build's inputs as prepare.mjs names them.
    for (const f of ["server.mjs", "src", ...ALWAYS])
      cpSync(join(HERE, f), join(copy, f), { recursive: true });
    symlinkSync(WORKSPACE_MODULES, join(copy, "node_modules"));
    mod = (await import(pathToFileURL(join(copy, "prepare.mjs")).href)) as Prepare;
  });
  after(() => rmSync(copy, { recursive: true, force: true }));

  it("builds once, readable by other uids, and not again while nothing changed", async () => {
    expect(mod.prepared()).to.equal(undefined);
    const first = await mod.prepare();
    const sha256 = createHash("sha256").update(readFileSync(mod.BUNDLE)).digest("hex");
    const cache = {
      file: mod.CACHE,
      sha256: createHash("sha256").update(readFileSync(mod.CACHE)).digest("hex"),
      loader: mod.LOADER,
    };
    expect(first).to.deep.equal({ ok: true, file: mod.BUNDLE, built: true, sha256, cache });
    expect(statSync(mod.BUNDLE).mode & 0o777).to.equal(0o644);
    expect(statSync(mod.BUILD_DIR).mode & 0o777).to.equal(0o755);
    expect(mod.prepared()).to.equal(mod.BUNDLE);
    expect(await mod.prepare()).to.deep.equal({
      ok: true,
      file: mod.BUNDLE,
      built: false,
      sha256,
      cache,
    });
  });

  it("builds again when a source changes, and when the bundle is not the one stamped", async () => {
    await mod.prepare();
    const src = join(copy, "src", "limiter.mjs");
    writeFileSync(src, `${readFileSync(src, "utf8")}\n// changed\n`);
    expect(mod.prepared()).to.equal(undefined);
    const rebuilt = await mod.prepare();
    expect(rebuilt.ok && rebuilt.built).to.equal(true);
    expect(mod.prepared()).to.equal(mod.BUNDLE);
    truncateSync(mod.BUNDLE, 100);
    expect(mod.prepared()).to.equal(undefined);
    const again = await mod.prepare();
    expect(again.ok && again.built).to.equal(true);
  });

  it("builds again when how its code cache is made changes (code-cache-build.mjs), and stamps it for the poolkeeper", async () => {
    await mod.prepare();
    // The poolkeeper stats the stamp's inputs at each spawn (host-prepare.ts): the module must be one.
    const stamp = JSON.parse(readFileSync(`${mod.BUNDLE}.stamp.json`, "utf8")) as {
      inputs: string[];
    };
    expect(stamp.inputs).to.include.members(["code-cache-build.mjs", ...ALWAYS]);
    const maker = join(copy, "code-cache-build.mjs");
    const text = readFileSync(maker, "utf8");
    try {
      writeFileSync(maker, `${text}\n// changed\n`);
      expect(mod.prepared()).to.equal(undefined);
      expect(mod.preparedCache()).to.equal(undefined);
      const rebuilt = await mod.prepare();
      expect(rebuilt.ok && rebuilt.built).to.equal(true);
      expect(mod.prepared()).to.equal(mod.BUNDLE);
    } finally {
      writeFileSync(maker, text);
    }
  });

  it("is built in the image from every input prepare.mjs names, and the image starts it with its cache", () => {
    const docker = readFileSync(join(HERE, "Dockerfile"), "utf8");
    const copied = [...docker.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) =>
      (m[1] ?? "").split(" "),
    );
    expect(copied).to.include.members(["server.mjs", "src", ...ALWAYS]);
    expect(docker).to.include("RUN node prepare.mjs");
    expect(docker).to.include("/runtime/.build/server.cjs.cache");
    expect(docker).to.match(/^CMD \["node", "start-cached\.cjs"\]$/m);
  });

  it("builds the same bundle whatever tsconfig.json is around it: no stamp input names one, and the image's context has none", async () => {
    const built = async () => {
      rmSync(mod.BUILD_DIR, { recursive: true, force: true });
      const r = await mod.prepare();
      return r.ok ? r.sha256 : r.reason;
    };
    const plain = await built();
    // The tree's runtimes/node/tsconfig.json extends tsconfig.base.json ("strict"); esbuild read
    // it and its output followed, while an edit to it rebuilt nothing (not a stamped input).
    const tsconfig = join(copy, "tsconfig.json");
    writeFileSync(tsconfig, JSON.stringify({ compilerOptions: { alwaysStrict: true } }));
    try {
      expect(await built()).to.equal(plain);
    } finally {
      rmSync(tsconfig, { force: true });
    }
  });

  it("never vouches for a build directory or file that another user could write, and rebuilds it as its own", async () => {
    await mod.prepare();
    const writable: Array<[string, number]> = [
      [mod.BUILD_DIR, 0o777],
      [mod.BUNDLE, 0o666],
      [`${mod.BUNDLE}.stamp.json`, 0o664],
    ];
    for (const [file, mode] of writable) {
      chmodSync(file, mode);
      // Stamp and bundle still match: only who could have written them is wrong.
      expect(mod.prepared(), file).to.equal(undefined);
      expect((await mod.prepare()).ok).to.equal(true);
      expect(mod.prepared()).to.equal(mod.BUNDLE);
      expect(statSync(mod.BUILD_DIR).mode & 0o777).to.equal(0o755);
    }
    // .build a symbolic link to a directory elsewhere: replaced by a directory of its own.
    const elsewhere = mkdtempSync(join(tmpdir(), "fizz-node-prepare-elsewhere-"));
    cpSync(mod.BUILD_DIR, elsewhere, { recursive: true });
    rmSync(mod.BUILD_DIR, { recursive: true });
    symlinkSync(elsewhere, mod.BUILD_DIR);
    expect(mod.prepared()).to.equal(undefined);
    expect((await mod.prepare()).ok).to.equal(true);
    expect(lstatSync(mod.BUILD_DIR).isDirectory()).to.equal(true);
    expect(mod.prepared()).to.equal(mod.BUNDLE);
    rmSync(elsewhere, { recursive: true });
    if (process.getuid?.() === 0) {
      // Owned by another (non-root) uid: that user could write it whatever its mode.
      chownSync(mod.BUILD_DIR, 12345, 12345);
      expect(mod.prepared()).to.equal(undefined);
      expect((await mod.prepare()).ok).to.equal(true);
      expect(statSync(mod.BUILD_DIR).uid).to.equal(0);
      expect(mod.prepared()).to.equal(mod.BUNDLE);
    }
  });

  it("keeps tar out of the start: it is required only where the archive form loads", async () => {
    await mod.prepare();
    const text = readFileSync(mod.BUNDLE, "utf8");
    // Strict as the ES modules it is made of (after server.mjs's #! line).
    expect(text).to.match(/^(#![^\n]*\n)?"use strict";\n/);
    // One require of tar, inside the lazily run wrapper of archive.mjs, never at the top.
    expect(text.match(/require\("tar[^"]*"\)/g)).to.have.length(1);
    const port = await freePort();
    const scratch = mkdtempSync(join(tmpdir(), "fizz-node-prepare-run-"));
    const proc = spawn(process.execPath, [mod.BUNDLE], {
      env: { ...minimalEnv(scratch), PORT: String(port), HOST: "127.0.0.1" },
      stdio: "ignore",
    });
    try {
      await waitForHealthz(`http://127.0.0.1:${port}`, 20_000);
    } finally {
      proc.kill("SIGKILL");
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
