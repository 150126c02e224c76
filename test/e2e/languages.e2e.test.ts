import { cp } from "node:fs/promises";
import path from "node:path";
import { expect } from "chai";
import { startPlatform, type Platform } from "./helpers";
import { caseDir, FIXTURES, selectedLanguages, throwLine, type Behaviour } from "./languages/cases";
import type { LanguageCase } from "./languages/cases";
import { dumpLogsOnFailure, errorCode, json, timed } from "./probes";

/**
 * Issue 13, every language as a user deploys it with the `fizz` CLI on the local platform
 * (process backend): Fission's hello world, a JSON echo, a thrown error, a call past the
 * function's timeout and a multi-file package. Go and C# are compiled by the builder: their hello
 * world goes through `--code hello.go` (the CLI turns it into a one-file source package), the rest
 * through `--src`. One platform for the whole file; each fn create's time is printed (a first Go
 * build fills its cache).
 */
describe("every language, end to end: hello, JSON echo, thrown error, timeout, multi-file package", function () {
  this.timeout(300_000);
  let p: Platform;
  /** A copy of test/e2e/languages/ in the work directory (what a user has on disk). */
  let fixtures: string;

  before(async () => {
    p = await startPlatform({
      FIZZ_REPORT_INTERVAL_MS: "200",
      FIZZ_DRAIN_MS: "500",
      FIZZ_KILL_GRACE_MS: "500",
    });
    fixtures = path.join(p.workDir, "languages");
    await cp(FIXTURES, fixtures, { recursive: true });
  });
  after(async () => {
    await p?.stop();
  });
  afterEach(dumpLogsOnFailure(() => p, 120));

  async function ok(...args: string[]) {
    const r = await p.fizz(...args);
    expect(r.code, `fizz ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).to.equal(0);
    return r;
  }

  /**
   * `fizz fn create` of one behaviour: `--code <file>` for an interpreted language (and for a
   * compiled language's hello world), `--src <dir>` otherwise. Prints how long it took.
   */
  async function deploy(c: LanguageCase, b: Behaviour, extra: string[] = []): Promise<string> {
    const name = `${c.lang}-${b}`;
    const dir = path.join(fixtures, path.relative(FIXTURES, caseDir(c, b)));
    const args = ["fn", "create", "--name", name, "--env", c.lang, ...extra];
    if (b === "multi" || (c.compiled && b !== "hello")) args.push("--src", dir);
    else args.push("--code", path.join(dir, c.files[b]));
    const entrypoint = b === "multi" ? (c.multiEntrypoint ?? c.entrypoint) : c.entrypoint;
    if (entrypoint !== undefined) args.push("--entrypoint", entrypoint);
    const started = performance.now();
    await ok(...args);
    console.log(`      ${name}: fn create ${Math.round(performance.now() - started)} ms`);
    return name;
  }

  const url = (name: string, query = "") =>
    `${p.gatewayUrl}/function/${name}${query ? `?${query}` : ""}`;

  for (const c of selectedLanguages()) {
    describe(c.lang, function () {
      before(async function () {
        // Never a silent skip: the CI machine has every runtime, so a missing one is a failure.
        const checking = performance.now();
        const why = await c.unavailable();
        if (why !== undefined) throw new Error(`${c.lang} is unavailable on this machine: ${why}`);
        // A compiled runtime's prepare.mjs builds its artifacts the first time (then: a hash check).
        console.log(
          `      ${c.lang}: runtime checked in ${Math.round(performance.now() - checking)} ms`,
        );
        await ok("env", "create", "--name", c.lang, "--image", c.image, "--poolsize", "2");
      });

      it("serves Fission's hello world", async () => {
        const name = await deploy(c, "hello");
        const cold = await timed(url(name));
        expect(cold.status, cold.text || cold.error).to.equal(200);
        expect(cold.text.trim()).to.equal("Hello, world!");
        const warm = await timed(url(name));
        expect(warm.text.trim()).to.equal("Hello, world!");
        console.log(
          `      ${c.lang} hello: cold ${cold.ms.toFixed(1)} ms, warm ${warm.ms.toFixed(1)} ms`,
        );
        if (c.compiled) {
          // --code of a compiled language became a source package the builder compiled.
          const fn = await p.api("GET", `/v1/namespaces/default/functions/${name}`);
          const spec = (fn.json as { spec: { code?: unknown; package?: { name: string } } }).spec;
          expect(spec.code, "no single-file code").to.equal(undefined);
          expect(spec.package?.name, "a package").to.be.a("string");
          const pkg = await p.api("GET", `/v1/namespaces/default/packages/${spec.package!.name}`);
          const { spec: pspec, status } = pkg.json as {
            spec: { source?: unknown };
            status: { buildState: string };
          };
          expect(pspec.source, "built from source").to.not.equal(undefined);
          expect(status.buildState).to.equal("succeeded");
        }
      });

      it("answers a POSTed JSON body back as JSON", async () => {
        const name = await deploy(c, "echo");
        const body = { greeting: "héllo wörld", n: [1, 2.5, -3], nested: { ok: true, none: null } };
        const r = await timed(url(name), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
        expect(r.status, r.text || r.error).to.equal(200);
        expect(r.headers.get("content-type")).to.match(/^application\/json/);
        expect(json(r)).to.deep.equal(body);
      });

      it("answers 500 FUNCTION_ERROR naming the error for a thrown error, and keeps serving", async () => {
        const name = await deploy(c, "error");
        for (let i = 0; i < 2; i++) {
          const r = await timed(url(name));
          expect(r.status, r.text || r.error).to.equal(500);
          expect(errorCode(r)).to.equal("FUNCTION_ERROR");
          const message = json<{ error: { message: string } }>(r).error.message;
          expect(message).to.include("boom from the function");
          if (c.errorNamesLine) expect(message).to.include(`${c.files.error}:${throwLine(c)}`);
          if (i === 0) console.log(`      ${c.lang} error message: ${message.slice(0, 160)}`);
        }
      });

      it("answers 504 TIMEOUT past the function's timeout, and the next call works", async () => {
        const name = await deploy(c, "timeout", ["--timeout", "1", "--max-instances", "2"]);
        const first = await timed(url(name));
        expect(first.status, first.text || first.error).to.equal(200);
        expect(first.text.trim()).to.equal("awake");
        const slow = await timed(url(name, "slow=1"));
        expect(slow.status, slow.text || slow.error).to.equal(504);
        expect(errorCode(slow)).to.equal("TIMEOUT");
        expect(slow.ms).to.be.within(900, 4000);
        const next = await timed(url(name));
        expect(next.status, next.text || next.error).to.equal(200);
        expect(next.text.trim()).to.equal("awake");
      });

      it("serves a multi-file package (--src) whose entry uses a second file", async () => {
        const name = await deploy(c, "multi");
        const r = await timed(url(name));
        expect(r.status, r.text || r.error).to.equal(200);
        expect(r.text.trim()).to.equal("hello fizz from a second file");
      });
    });
  }
});
