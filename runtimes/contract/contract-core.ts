// The core of the runtime contract: what any environment must do for the platform to run it,
// checked with five small fixtures a custom environment provides (docs/runtime-contract.md,
// "Conformance suite"). Only the JSON form of specialize is used. Our six runtimes pass the full
// suite (runtime-contract.ts), which covers all of this and more.
import { createHash } from "node:crypto";
import http from "node:http";
import { expect } from "chai";
import { type CallMarkers, describeCallMarkers } from "./contract-call-markers.js";
import { describeArchiveForm, describeFraming } from "./contract-core-refusals.js";
import { describeLimits } from "./contract-limits.js";
import { ME, healthState, push } from "./contract-lifecycle.js";
import {
  type Runtime,
  type StartOptions,
  eventually,
  postJson,
  request,
  specializeBody,
} from "./harness.js";
import type { Source } from "./runtime-under-test.js";

export interface CoreFixtures {
  /** Answers `Hello, world!\n` as text/plain. */
  hello: Source;
  /** Answers the request body as it came, status 200. */
  echo: Source;
  /** Waits the `ms` query parameter's milliseconds, then answers the text `finished`. */
  slow: Source;
  /** Throws (dies with) an error whose message is `boom from the function`, on a line of its own. */
  throws: Source;
  /** Answers the text value of FIZZ_SPECIALIZE_TOKEN in its own environment, or `absent`. */
  tokenLeak: Source;
  /** Code that does not load because of what is on line `line`. */
  loadFailure: Source & { line: number };
}

export interface CoreRuntimeUnderTest {
  name: string;
  start: (env?: Record<string, string>, options?: StartOptions) => Promise<Runtime>;
  fixtures: CoreFixtures;
  /** The runtime also loads the archive form of specialize (a package); JSON only when false. */
  packages?: boolean;
  /** The runtime prints call markers (optional for a custom environment): its checks' function. */
  callMarkers?: CallMarkers;
  /**
   * Without call markers, a function printing `one <tag>` / `two <tag>` for the abandoned-call
   * check (`RuntimeUnderTest.twicePrinter`); left out too, that check only sees the instance is
   * not wedged.
   */
  twicePrinter?: Source;
}

/** `file`, then up to a few non-digits (`:`, `" line `, ` line `), then the line number. */
const fileAndLine = (filename: string, line: number) =>
  new RegExp(`${filename.replace(/[.^$*+?()[\]{}|\\]/g, "\\$&")}\\D{1,12}${line}\\b`);

export function describeCoreContract(runtime: CoreRuntimeUnderTest): void {
  const { name, start, fixtures } = runtime;
  const { hello, echo, slow, throws, tokenLeak, loadFailure } = fixtures;

  describe(`${name} runtime: the core runtime contract`, function () {
    this.timeout(20_000);

    describe("before specialization", () => {
      let rt: Runtime;
      before(async () => (rt = await start({ FIZZ_INSTANCE_ID: "inst-1" })));
      after(() => rt.kill());

      it("reports state warm on /healthz and 503 on /readyz", async () => {
        const health = await request(rt.url, { path: "/healthz" });
        expect(health.status).to.equal(200);
        expect(health.json).to.deep.equal({ status: "ok", state: "warm" });
        expect((await request(rt.url, { path: "/readyz" })).status).to.equal(503);
      });

      it("answers 503 NOT_SPECIALIZED to user traffic", async () => {
        for (const headers of [ME, {}]) {
          const res = await request(rt.url, { path: "/anything", headers });
          expect(res.status).to.equal(503);
          expect(res.error().code).to.equal("NOT_SPECIALIZED");
        }
      });

      it("refuses a malformed specialize with 400 VALIDATION_FAILED naming the field", async () => {
        const good = specializeBody(hello.filename, hello.source);
        const cases: Array<[unknown, string]> = [
          [{ ...good, code: undefined }, "code"],
          [{ ...good, code: "not base64!" }, "code"],
          [{ ...good, filename: "../escape" }, "filename"],
          [{ ...good, function: undefined }, "function"],
        ];
        for (const [body, field] of cases) {
          const res = await postJson(rt.url, "/v2/specialize", body);
          expect(res.status, field).to.equal(400);
          expect(res.error(), field).to.include({ code: "VALIDATION_FAILED", field });
        }
        const notJson = await request(rt.url, {
          method: "POST",
          path: "/v2/specialize",
          body: "{",
        });
        expect(notJson.status).to.equal(400);
        expect(await healthState(rt)).to.equal("warm");
      });

      it("answers 421 to a specialize meant for another instance, and stays warm", async () => {
        const res = await push(rt, hello, { instanceId: "inst-2" });
        expect(res.status).to.equal(421);
        expect(res.error().code).to.equal("MISDIRECTED");
        expect(await healthState(rt)).to.equal("warm");
      });
    });

    describe("specialized once with hello", () => {
      let rt: Runtime;
      before(async () => (rt = await start({ FIZZ_INSTANCE_ID: "inst-1" })));
      after(() => rt.kill());

      it("specializes and answers Hello, world! as text/plain", async () => {
        const res = await push(rt, hello, { instanceId: "inst-1" });
        expect(res.status, res.text).to.equal(200);
        expect(res.object().status).to.equal("specialized");
        const answer = await request(rt.url, { headers: ME });
        expect(answer.status).to.equal(200);
        expect(answer.text).to.equal("Hello, world!\n");
        expect(answer.headers["content-type"]).to.match(/^text\/plain/);
      });

      it("reports state specialized on /healthz and 200 on /readyz", async () => {
        expect(await healthState(rt)).to.equal("specialized");
        expect((await request(rt.url, { path: "/readyz" })).status).to.equal(200);
      });

      it("refuses a second specialize with 409 ALREADY_SPECIALIZED", async () => {
        const res = await push(rt, echo);
        expect(res.status).to.equal(409);
        expect(res.error().code).to.equal("ALREADY_SPECIALIZED");
        expect((await request(rt.url, { headers: ME })).text).to.equal("Hello, world!\n");
      });

      it("answers 421 MISDIRECTED to a request meant for another instance", async () => {
        const res = await request(rt.url, { headers: { "x-fizz-instance": "inst-2" } });
        expect(res.status).to.equal(421);
        expect(res.error().code).to.equal("MISDIRECTED");
      });

      it("sends any path carrying X-Fizz-Instance to the function, internal paths included", async () => {
        for (const path of ["/healthz", "/v2/specialize", "/some/path?x=1"]) {
          const res = await request(rt.url, { path, headers: ME });
          expect(res.text, path).to.equal("Hello, world!\n");
        }
      });

      it("keeps connections alive between requests", async () => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        try {
          const first = await request(rt.url, { headers: ME, agent });
          const second = await request(rt.url, { headers: ME, agent });
          expect(second.text).to.equal("Hello, world!\n");
          expect(second.localPort).to.equal(first.localPort);
        } finally {
          agent.destroy();
        }
      });
    });

    describe("when the code does not load", () => {
      let rt: Runtime;
      before(async () => (rt = await start()));
      after(() => rt.kill());

      it("answers 500 FUNCTION_LOAD_FAILED naming file and line, then refuses traffic", async () => {
        const res = await push(rt, loadFailure);
        expect(res.status, res.text).to.equal(500);
        expect(res.error().code).to.equal("FUNCTION_LOAD_FAILED");
        expect(res.error().message).to.match(fileAndLine(loadFailure.filename, loadFailure.line));
        expect(await healthState(rt)).to.equal("failed");
        expect((await request(rt.url, { path: "/readyz" })).status).to.equal(503);
        expect((await request(rt.url, { headers: ME })).status).to.equal(503);
        expect((await push(rt, hello)).status).to.equal(409);
      });
    });

    describe("specialize token and code digest", () => {
      const TOKEN = "per-instance-token-0123456789abcdef";
      const digest = (s: string) => `sha256:${createHash("sha256").update(s).digest("hex")}`;
      const body = {
        ...specializeBody(hello.filename, hello.source),
        digest: digest(hello.source),
      };
      let rt: Runtime;
      before(async () => (rt = await start({ FIZZ_SPECIALIZE_TOKEN: TOKEN })));
      after(() => rt.kill());

      it("refuses a specialize without the token, or with a wrong one, with 401", async () => {
        for (const headers of [{}, { "x-fizz-specialize-token": "guess" }]) {
          const res = await postJson(rt.url, "/v2/specialize", body, headers);
          expect(res.status).to.equal(401);
          expect(res.error().code).to.equal("UNAUTHENTICATED");
        }
        expect(await healthState(rt)).to.equal("warm");
      });

      it("refuses code that does not hash to its digest with 400 DIGEST_MISMATCH", async () => {
        const tampered = { ...body, digest: digest("something else") };
        const headers = { "x-fizz-specialize-token": TOKEN };
        const res = await postJson(rt.url, "/v2/specialize", tampered, headers);
        expect(res.status).to.equal(400);
        expect(res.error()).to.include({ code: "DIGEST_MISMATCH", field: "digest" });
        expect(await healthState(rt)).to.equal("warm");
      });

      it("specializes with the token and the right digest", async () => {
        const headers = { "x-fizz-specialize-token": TOKEN };
        const res = await postJson(rt.url, "/v2/specialize", body, headers);
        expect(res.status, res.text).to.equal(200);
        expect((await request(rt.url, { headers: ME })).text).to.equal("Hello, world!\n");
      });
    });

    describe("the specialize token and user code", () => {
      const TOKEN = "per-instance-token-fedcba9876543210";
      let rt: Runtime;
      before(async () => (rt = await start({ FIZZ_SPECIALIZE_TOKEN: TOKEN })));
      after(() => rt.kill());

      it("keeps the token out of the function's environment", async () => {
        // Whoever deploys a function must not learn the token: with it, code in another
        // instance's reach could specialize that instance with anything.
        const entrypoint =
          tokenLeak.entrypoint === undefined ? {} : { entrypoint: tokenLeak.entrypoint };
        const body = specializeBody(tokenLeak.filename, tokenLeak.source, entrypoint);
        const res = await postJson(rt.url, "/v2/specialize", body, {
          "x-fizz-specialize-token": TOKEN,
        });
        expect(res.status, res.text).to.equal(200);
        const answer = await request(rt.url, { headers: ME });
        expect(answer.status, answer.text).to.equal(200);
        expect(answer.text).to.equal("absent");
        expect(rt.stdout() + rt.stderr()).to.not.include(TOKEN);
      });
    });

    describeArchiveForm(runtime);

    describe("bodies", () => {
      let rt: Runtime;
      before(async () => {
        rt = await start({ FIZZ_MAX_BODY_BYTES: "4096" });
        expect((await push(rt, echo)).status).to.equal(200);
      });
      after(() => rt.kill());

      it("reads Content-Length and chunked bodies", async () => {
        for (const body of ["héllo", ["hé", "llo"]]) {
          const res = await request(rt.url, { method: "POST", headers: ME, body });
          expect(res.status).to.equal(200);
          expect(res.text, JSON.stringify(body)).to.equal("héllo");
        }
      });

      it("refuses a body over FIZZ_MAX_BODY_BYTES with 413 PAYLOAD_TOO_LARGE, and keeps serving", async () => {
        const res = await request(rt.url, { method: "POST", headers: ME, body: "x".repeat(4097) });
        expect(res.status).to.equal(413);
        expect(res.error().code).to.equal("PAYLOAD_TOO_LARGE");
        const fits = await request(rt.url, { method: "POST", headers: ME, body: "x".repeat(4096) });
        expect(fits.text).to.equal("x".repeat(4096));
      });
    });

    describe("a function that throws", () => {
      let rt: Runtime;
      before(async () => {
        rt = await start();
        expect((await push(rt, throws)).status).to.equal(200);
      });
      after(() => rt.kill());

      it("answers 500 FUNCTION_ERROR with its message, logs file and line, and keeps serving", async () => {
        const line =
          throws.source.split("\n").findIndex((l) => l.includes("boom from the function")) + 1;
        expect(line, "the fixture throws on a line of its own").to.be.above(0);
        for (let i = 0; i < 2; i++) {
          const res = await request(rt.url, { headers: ME });
          expect(res.status).to.equal(500);
          expect(res.error().code).to.equal("FUNCTION_ERROR");
          expect(res.error().message).to.include("boom from the function");
        }
        const where = fileAndLine(throws.filename, line);
        await eventually(() => where.test(rt.stderr() + rt.stdout()));
        expect(await healthState(rt)).to.equal("specialized");
      });
    });

    describeFraming(start, echo);

    const logs = runtime.callMarkers?.logs ?? runtime.twicePrinter;
    describeLimits(
      start,
      {
        deploy: (rt, _ms, options) => push(rt, slow, options),
        path: (ms) => `/?ms=${ms}`,
        answer: "finished",
      },
      logs && ((rt, options) => push(rt, logs, options)),
    );

    if (runtime.callMarkers) describeCallMarkers(start, push, runtime.callMarkers);
  });
}
