import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { silentLogger } from "@fizz/kit";
import { expect } from "chai";
import { instanceAgent } from "../src/instance-http";
import { loadConfig } from "../src/config";
import { NodeBuild } from "../src/host-prepare";
import { ProcessBackend } from "../src/process-backend";
import { env } from "./fake-backend";

/**
 * A runtimes directory whose node/prepare.mjs stands in for the real one (the same output: the
 * bundle, its stamp naming the inputs, one JSON line), counting its runs: real child processes.
 */
function fakeRuntimes(): {
  dir: string;
  runs: () => number;
  source: string;
  bundle: string;
  cache: string;
  loader: string;
} {
  const dir = mkdtempSync(path.join(tmpdir(), "fizz-node-build-"));
  const node = path.join(dir, "node");
  mkdirSync(node);
  const source = path.join(node, "server.mjs");
  writeFileSync(source, "// v1\n");
  const bundle = path.join(node, ".build", "server.cjs");
  const cache = `${bundle}.cache`;
  const loader = path.join(node, "start-cached.cjs");
  writeFileSync(
    path.join(node, "prepare.mjs"),
    `import { createHash } from "node:crypto";
     import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
     if (existsSync(${JSON.stringify(path.join(dir, "slow"))})) await new Promise((r) => setTimeout(r, 1500));
     appendFileSync(${JSON.stringify(path.join(dir, "runs"))}, "x");
     const failing = ${JSON.stringify(path.join(dir, "fail"))};
     if (existsSync(failing)) {
       console.log(JSON.stringify({ ok: false, reason: readFileSync(failing, "utf8") }));
       process.exit(1);
     }
     mkdirSync(${JSON.stringify(path.dirname(bundle))}, { recursive: true });
     writeFileSync(${JSON.stringify(bundle)}, "// built\\n");
     writeFileSync(${JSON.stringify(`${bundle}.stamp.json`)}, JSON.stringify({ inputs: ["server.mjs"] }));
     // The SHA-256 of what it vouches for; with a "lie" file, of other bytes (as when another
     // builder renamed its own bundle over this one before the process backend looked).
     const text = existsSync(${JSON.stringify(path.join(dir, "lie"))}) ? "// other\\n" : "// built\\n";
     const sha256 = createHash("sha256").update(text).digest("hex");
     // With a "cache" file: a code cache next to it (made once: a link put there stays one).
     let cache;
     if (existsSync(${JSON.stringify(path.join(dir, "cache"))})) {
       if (!existsSync(${JSON.stringify(cache)})) writeFileSync(${JSON.stringify(cache)}, "bytecode\\n");
       cache = { file: ${JSON.stringify(cache)}, loader: ${JSON.stringify(loader)},
         sha256: createHash("sha256").update("bytecode\\n").digest("hex") };
     }
     console.log(JSON.stringify({ ok: true, file: ${JSON.stringify(bundle)}, built: true, sha256, cache }));`,
  );
  const runs = () => {
    try {
      return readFileSync(path.join(dir, "runs"), "utf8").length;
    } catch {
      return 0;
    }
  };
  return { dir, runs, source, bundle, cache, loader };
}

describe("node runtime build as the process backend keeps it (NodeBuild)", function () {
  this.timeout(30_000);
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it("starts the build once checked, and its sources while a source is newer, until rebuilt", async () => {
    const rt = fakeRuntimes();
    dirs.push(rt.dir);
    const build = new NodeBuild(rt.dir, silentLogger());
    expect(build.entry()).to.equal(undefined); // not checked yet: the sources
    await build.check();
    expect(rt.runs()).to.equal(1);
    expect(build.entry()).to.equal(rt.bundle);
    expect(build.entry()).to.equal(rt.bundle);
    expect(rt.runs()).to.equal(1); // a current build is not checked again per spawn

    // An edit after the check: this spawn gets the sources, the build is redone meanwhile.
    const later = new Date(Date.now() + 2000);
    utimesSync(rt.source, later, later);
    expect(build.entry()).to.equal(undefined);
    await build.check(); // the re-check already under way
    expect(rt.runs()).to.equal(2);
    expect(build.entry()).to.equal(rt.bundle);
    expect(rt.runs()).to.equal(2); // dated in the future, yet no rebuild at every spawn
  });

  it("notices an edit that keeps the old modification date (cp -p, tar x, touch -r) in a source or the build", async () => {
    const rt = fakeRuntimes();
    dirs.push(rt.dir);
    const build = new NodeBuild(rt.dir, silentLogger());
    await build.check();
    expect(build.entry()).to.equal(rt.bundle);

    // A source restored with its old date: the build no longer matches it.
    const { atime, mtime } = statSync(rt.source);
    writeFileSync(rt.source, "// v2, restored from a copy that kept its date\n");
    utimesSync(rt.source, atime, mtime);
    expect(build.entry()).to.equal(undefined);
    await build.check();
    expect(rt.runs()).to.equal(2);
    expect(build.entry()).to.equal(rt.bundle);

    // The build itself replaced by other bytes with its old date: not vouched for any more.
    const dated = statSync(rt.bundle);
    writeFileSync(rt.bundle, "// not what was checked\n");
    utimesSync(rt.bundle, dated.atime, dated.mtime);
    expect(build.entry()).to.equal(undefined);
    await build.check();
  });

  it("the process backend's close() waits for a re-check under way: its child does not outlive it", async () => {
    const rt = fakeRuntimes();
    dirs.push(rt.dir);
    const workDir = mkdtempSync(path.join(tmpdir(), "fizz-node-build-work-"));
    dirs.push(workDir);
    const agent = instanceAgent();
    const config = loadConfig({ FIZZ_WORKDIR: workDir });
    const backend = new ProcessBackend({
      workDir,
      runtimesDir: rt.dir,
      python: config.python,
      interpreters: config.interpreters,
      spawnTimeoutMs: 20_000,
      killGraceMs: 2000,
      baseEnv: config.instanceEnv,
      isolation: config.isolation,
      allowEnvCommand: false,
      agent,
      logger: silentLogger(),
    });
    try {
      const node = env("node", { image: "fizz/env-node" });
      const deadline = Date.now() + 20_000;
      while (backend.command(node)?.[1] !== rt.bundle && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(backend.command(node)?.[1]).to.equal(rt.bundle);
      // A source edited: the next command starts the sources and a (slow) re-check begins.
      writeFileSync(path.join(rt.dir, "slow"), "");
      writeFileSync(rt.source, "// v2\n");
      expect(backend.command(node)?.[1]).to.equal(path.join(rt.dir, "node", "server.mjs"));
      await backend.close();
      expect(rt.runs()).to.equal(2);
    } finally {
      await backend.close();
      agent.destroy();
    }
  });

  it("starts the sources when the build found there is not the one the check vouched for", async () => {
    const rt = fakeRuntimes();
    dirs.push(rt.dir);
    writeFileSync(path.join(rt.dir, "lie"), "");
    const build = new NodeBuild(rt.dir, silentLogger());
    await build.check();
    expect(build.entry()).to.equal(undefined);
    expect(rt.runs()).to.equal(3); // asked again twice: another builder's rename is a moment
    rmSync(path.join(rt.dir, "lie"));
    await build.check();
    expect(build.entry()).to.equal(rt.bundle);
  });

  it("tries a failed build again at a later spawn (a source saved half-way), never one without esbuild", async () => {
    const rt = fakeRuntimes();
    dirs.push(rt.dir);
    const fail = path.join(rt.dir, "fail");
    writeFileSync(fail, "esbuild: server.mjs:3: Unexpected end of file");
    const build = new NodeBuild(rt.dir, silentLogger(), 0);
    await build.check();
    expect(build.entry()).to.equal(undefined); // failed: the sources, and a new try begins
    await build.settled();
    expect(rt.runs()).to.equal(2);
    rmSync(fail); // the source fixed
    expect(build.entry()).to.equal(undefined);
    await build.settled();
    expect(build.entry()).to.equal(rt.bundle);

    const slim = fakeRuntimes();
    dirs.push(slim.dir);
    writeFileSync(path.join(slim.dir, "fail"), "esbuild is not installed: Cannot find package");
    const none = new NodeBuild(slim.dir, silentLogger(), 0);
    await none.check();
    expect(none.entry()).to.equal(undefined);
    await none.settled();
    expect(slim.runs()).to.equal(1);
  });

  it("starts the build with its code cache only while the cache is the one verified, as the builder wrote it", async () => {
    const rt = fakeRuntimes();
    dirs.push(rt.dir);
    writeFileSync(path.join(rt.dir, "cache"), "");
    const build = new NodeBuild(rt.dir, silentLogger());
    await build.check();
    expect(build.entry()).to.equal(rt.loader);
    const made = readFileSync(rt.cache);
    const elsewhere = path.join(rt.dir, "planted");
    const attacks: Array<[string, () => void, () => void]> = [
      ["world-writable", () => chmodSync(rt.cache, 0o666), () => chmodSync(rt.cache, 0o644)],
      ["group-writable", () => chmodSync(rt.cache, 0o664), () => chmodSync(rt.cache, 0o644)],
      [
        "other bytes",
        () => writeFileSync(rt.cache, "other bytecode\n"),
        () => writeFileSync(rt.cache, made),
      ],
      [
        "a link to the same bytes elsewhere",
        () => {
          writeFileSync(elsewhere, made);
          rmSync(rt.cache);
          symlinkSync(elsewhere, rt.cache);
        },
        () => {
          rmSync(rt.cache);
          writeFileSync(rt.cache, made);
        },
      ],
    ];
    for (const [what, attack, undo] of attacks) {
      attack();
      // At once: the build alone (never no start), and checked again...
      expect(build.entry(), what).to.equal(rt.bundle);
      await build.settled();
      // ...where the cache is found as it is now and refused: still the build alone.
      expect(build.entry(), what).to.equal(rt.bundle);
      undo();
      await build.check();
      expect(build.entry(), what).to.equal(rt.loader);
    }
  });

  it("starts the sources when there is no build script (an older runtimes copy)", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "fizz-node-build-none-"));
    dirs.push(dir);
    const build = new NodeBuild(dir, silentLogger());
    await build.check();
    expect(build.entry()).to.equal(undefined);
  });
});
