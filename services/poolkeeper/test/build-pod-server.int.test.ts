import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { canonicalize, extractArchive, packDirectory } from "@fizz/kit/archive";
import { freePort, waitFor } from "@fizz/testkit";
import { request } from "undici";
import { postBuild, type PodBuildRequest } from "../src/build/pod-client";

const SERVER = path.resolve(import.meta.dirname, "../../../runtimes/builder/server.mjs");
const TOKEN = "builder-test-token";

/**
 * The builder pods' program (runtimes/builder/server.mjs) run as a local process, driven through
 * the poolkeeper's own client (postBuild): the protocol both sides of a Kubernetes build speak.
 */
describe("builder pod program: POST /build", function () {
  this.timeout(120_000);
  let dir: string;
  let n = 0;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "fizz-builder-pod-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function startServer(env: Record<string, string> = {}) {
    const port = await freePort();
    const work = await mkdtemp(path.join(dir, "work-"));
    const proc = spawn(process.execPath, [SERVER], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        PORT: String(port),
        HOST: "127.0.0.1",
        FIZZ_BUILDER_TOKEN: TOKEN,
        FIZZ_WORKDIR: work,
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const address = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${address}/healthz`).catch(() => undefined))?.ok, {
      what: "the builder's /healthz",
    });
    return { proc, address };
  }

  async function source(files: Record<string, string>): Promise<string> {
    const src = path.join(dir, `src-${++n}`);
    for (const [name, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(src, name)), { recursive: true });
      await writeFile(path.join(src, name), content);
    }
    const file = `${src}.tar.gz`;
    await packDirectory(src, file);
    return file;
  }

  async function build(address: string, sourceFile: string, body: PodBuildRequest) {
    const outFile = path.join(dir, `out-${++n}.tar.gz`);
    const reply = await postBuild({
      address,
      token: TOKEN,
      body,
      sourceFile,
      outFile,
      maxBytes: 50 * 1024 * 1024,
      signal: AbortSignal.timeout(90_000),
    });
    if (!reply.ok) return { reply, dir: undefined };
    // What the poolkeeper does with the pod's archive before anyone reads it.
    const canonical = await canonicalize(outFile, path.join(dir, `canon-${n}`));
    const tree = path.join(dir, `tree-${n}`);
    await extractArchive({ path: canonical.path }, tree);
    return { reply, dir: tree };
  }

  describe("a reusable server (FIZZ_BUILDER_ONCE=0)", () => {
    let server: { proc: ChildProcess; address: string };
    before(async () => {
      server = await startServer({ FIZZ_BUILDER_ONCE: "0" });
    });
    after(() => server.proc.kill("SIGKILL"));

    it("runs a custom command with SRC_PKG/DEPLOY_PKG and returns DEPLOY_PKG as the deployment", async () => {
      const src = await source({ "main.js": "module.exports = 1;\n" });
      const r = await build(server.address, src, {
        runtime: "node",
        buildCommand: 'cp main.js "$DEPLOY_PKG/" && echo shipped > "$DEPLOY_PKG/marker"',
        timeoutSeconds: 30,
      });
      expect(r.reply.ok, JSON.stringify(r.reply)).to.equal(true);
      expect((await readdir(r.dir!)).sort()).to.deep.equal(["main.js", "marker"]);
    });

    it("installs a Node dependency with npm ci", async () => {
      const src = await source({
        "package.json": JSON.stringify({
          name: "x",
          version: "1.0.0",
          dependencies: { ms: "2.1.3" },
        }),
        "package-lock.json": JSON.stringify({
          name: "x",
          version: "1.0.0",
          lockfileVersion: 3,
          requires: true,
          packages: {
            "": { name: "x", version: "1.0.0", dependencies: { ms: "2.1.3" } },
            "node_modules/ms": {
              version: "2.1.3",
              resolved: "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz",
              integrity:
                "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==",
            },
          },
        }),
      });
      const r = await build(server.address, src, { runtime: "node", timeoutSeconds: 120 });
      expect(r.reply.ok, JSON.stringify(r.reply)).to.equal(true);
      expect(r.reply.log).to.include("$ npm ci --omit=dev");
      expect(existsSync(path.join(r.dir!, "node_modules/ms/package.json"))).to.equal(true);
    });

    it("compiles a Go package with runtimes/go/build.sh (this repo's runtimes/, Go on PATH) and names a compile error's file:line", async function () {
      if (
        !existsSync(path.resolve(import.meta.dirname, "../../../runtimes/go/.build/fizz-go-scan"))
      )
        this.skip();
      const go = await startServer({
        FIZZ_BUILDER_ONCE: "0",
        PATH: `/usr/local/go/bin:${process.env.PATH ?? "/usr/bin:/bin"}`,
      });
      try {
        const hello =
          'package main\n\nimport "net/http"\n\nfunc Handler(w http.ResponseWriter, r *http.Request) {\n\tw.Write([]byte("hi"))\n}\n';
        const ok = await build(go.address, await source({ "hello.go": hello }), {
          runtime: "go",
          timeoutSeconds: 90,
        });
        expect(ok.reply.ok, JSON.stringify(ok.reply)).to.equal(true);
        expect(await readdir(ok.dir!)).to.include("fizz-function");
        const broken = hello.replace('[]byte("hi")', "nope");
        const bad = await build(go.address, await source({ "hello.go": broken }), {
          runtime: "go",
          timeoutSeconds: 90,
        });
        expect(bad.reply.ok).to.equal(false);
        if (bad.reply.ok) return;
        expect(bad.reply.log).to.match(/hello\.go:6:\d+: undefined: nope/);
      } finally {
        go.proc.kill("SIGKILL");
      }
    });

    it("keeps a PHP package with composer.json as its source, saying dependencies must be vendored", async () => {
      const src = await source({ "composer.json": "{}", "index.php": "<?php\n" });
      const r = await build(server.address, src, { runtime: "php", timeoutSeconds: 30 });
      expect(r.reply.ok, JSON.stringify(r.reply)).to.equal(true);
      if (!r.reply.ok) return;
      expect(r.reply.log).to.match(/composer is not run here .*must be vendored/);
      expect((await readdir(r.dir!)).sort()).to.deep.equal(["composer.json", "index.php"]);
    });

    it("reports a failing build with its exit code and log, and keeps its own token from the build", async () => {
      const src = await source({ "a.txt": "a\n" });
      const r = await build(server.address, src, {
        runtime: "node",
        buildCommand: 'env; echo "broken" >&2; exit 3',
        env: { EXTRA: "given" },
        timeoutSeconds: 30,
      });
      expect(r.reply.ok).to.equal(false);
      if (r.reply.ok) return;
      expect(r.reply.message).to.match(/exited with code 3/);
      expect(r.reply.log).to.include("broken").and.to.include("EXTRA=given");
      expect(r.reply.log).to.not.include(TOKEN);
    });

    it("times a build out", async () => {
      const src = await source({ "a.txt": "a\n" });
      const r = await build(server.address, src, {
        runtime: null,
        buildCommand: "sleep 60",
        timeoutSeconds: 1,
      });
      expect(r.reply.ok).to.equal(false);
      if (!r.reply.ok) expect(r.reply.message).to.match(/^timed out after 1s/);
    });

    it("refuses a caller without the token, and a source that does not match its digest", async () => {
      const noToken = await request(`${server.address}/build`, { method: "POST", body: "{}\n" });
      expect(noToken.statusCode).to.equal(401);
      await noToken.body.text();
      const src = await readFile(await source({ "a.txt": "a\n" }));
      const wrong = await request(`${server.address}/build`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}` },
        body: Buffer.concat([
          Buffer.from(
            `${JSON.stringify({ digest: `sha256:${"0".repeat(64)}`, runtime: null, timeoutSeconds: 5 })}\n`,
          ),
          src,
        ]),
      });
      expect(wrong.statusCode).to.equal(400);
      expect(await wrong.body.text()).to.match(/hashes to sha256:/);
    });
  });

  it("serves one build, then exits (a fresh pod for every build)", async () => {
    const { proc, address } = await startServer();
    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
    const src = await source({ "a.txt": "a\n" });
    const r = await build(address, src, { runtime: null, timeoutSeconds: 10 });
    expect(r.reply.ok, JSON.stringify(r.reply)).to.equal(true);
    expect(await readdir(r.dir!)).to.deep.equal(["a.txt"]);
    expect(await exited).to.equal(0);
  });
});
