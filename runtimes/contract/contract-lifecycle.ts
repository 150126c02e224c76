// The runtime contract (docs/runtime-contract.md), part 1: the instance's life before and at
// specialization: /healthz and /readyz, specialize and its refusals, code that does not load, the
// handler shapes a language supports, and the specialize token and code digest.
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import {
  type Runtime,
  type SpecializeOptions,
  postJson,
  request,
  specialize,
  specializeArchive,
  specializeBody,
} from "./harness.js";
import { packageArchive } from "./archive.js";
import { type Deployer, topLevel } from "./deploy.js";
import type { RuntimeUnderTest, Source } from "./runtime-under-test.js";

export const ME = { "x-fizz-instance": "inst-1" };

/** Specializes `rt` with a fixture, its entrypoint included. */
export function push(rt: Runtime, src: Source, options: SpecializeOptions = {}) {
  const entrypoint = src.entrypoint === undefined ? {} : { entrypoint: src.entrypoint };
  return specialize(rt, src.filename, src.source, { ...entrypoint, ...options });
}

export async function healthState(rt: Runtime): Promise<unknown> {
  return (await request(rt.url, { path: "/healthz" })).object().state;
}

export function describeLifecycle(
  { start, fixtures, loadsSource = false }: RuntimeUnderTest,
  deploy: Deployer,
): void {
  const { hello } = fixtures;
  const ext = hello.filename.slice(hello.filename.lastIndexOf("."));

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

    it("refuses a malformed specialize with 400 naming the field, and stays warm", async () => {
      const good = specializeBody(hello.filename, hello.source);
      const badRevision = (revision: unknown) => ({
        ...good,
        function: { namespace: "default", name: "hello", revision },
      });
      const cases: Array<[unknown, string]> = [
        [{ ...good, code: undefined }, "code"],
        [{ ...good, code: "not base64!" }, "code"],
        [{ ...good, filename: `../escape${ext}` }, "filename"],
        [{ ...good, filename: fixtures.foreignFilename }, "filename"],
        [{ ...good, function: undefined }, "function"],
        [badRevision("3"), "function.revision"],
        [badRevision(true), "function.revision"],
        [{ ...good, entrypoint: "a/b" }, "entrypoint"],
        [{ ...good, concurrency: 0 }, "concurrency"],
        [{ ...good, env: { GREETING: 1 } }, "env.GREETING"],
        [[1, 2], "body"],
      ];
      for (const [body, field] of cases) {
        const res = await postJson(rt.url, "/v2/specialize", body);
        expect(res.status, field).to.equal(400);
        expect(res.error()).to.include({ code: "VALIDATION_FAILED", field });
      }
      const notJson = await request(rt.url, { method: "POST", path: "/v2/specialize", body: "{" });
      expect(notJson.status).to.equal(400);
      expect(notJson.error().field).to.equal("body");
      expect(await healthState(rt)).to.equal("warm");
    });

    it("answers 421 to a specialize meant for another instance, and stays warm", async () => {
      const res = await push(rt, hello, { instanceId: "inst-2" });
      expect(res.status).to.equal(421);
      expect(res.error().code).to.equal("MISDIRECTED");
      expect(await healthState(rt)).to.equal("warm");
    });
  });

  describe("with Fission's hello world", () => {
    let rt: Runtime;
    let workdir: string;
    before(async () => {
      workdir = mkdtempSync(join(tmpdir(), "fizz-runtime-workdir-"));
      rt = await start({ FIZZ_INSTANCE_ID: "inst-1", FIZZ_WORKDIR: workdir });
    });
    after(async () => {
      await rt.kill();
      rmSync(workdir, { recursive: true, force: true });
    });

    it("specializes and answers Hello, world! as text/plain", async () => {
      const res = await deploy.source(rt, hello, { instanceId: "inst-1" });
      expect(res.status).to.equal(200);
      expect(res.object().status).to.equal("specialized");
      expect(res.object().loadMs).to.be.a("number");
      const answer = await request(rt.url, { path: "/", headers: ME });
      expect(answer.status).to.equal(200);
      expect(answer.text).to.equal("Hello, world!\n");
      expect(answer.headers["content-type"]).to.match(/^text\/plain/);
    });

    if (deploy.compiled) {
      it("writes the compiled package into <FIZZ_WORKDIR>/fn, exactly the files deployed", async () => {
        const deployed = topLevel(await deploy.sourceFiles(hello));
        expect(readdirSync(join(workdir, "fn")).sort()).to.deep.equal(deployed);
      });
    } else {
      it("writes the code into FIZZ_WORKDIR under the user's file name", () => {
        expect(readdirSync(workdir)).to.include(hello.filename);
      });
    }

    it("reports state specialized on /healthz and 200 on /readyz", async () => {
      expect((await request(rt.url, { path: "/healthz" })).json).to.deep.equal({
        status: "ok",
        state: "specialized",
      });
      expect((await request(rt.url, { path: "/readyz" })).status).to.equal(200);
    });

    it("refuses a second specialize with 409 ALREADY_SPECIALIZED", async () => {
      const res = await push(rt, hello);
      expect(res.status).to.equal(409);
      expect(res.error().code).to.equal("ALREADY_SPECIALIZED");
    });

    it("answers 421 to a request meant for another instance, with or without a body", async () => {
      for (const body of [undefined, "x"]) {
        const res = await request(rt.url, {
          method: body === undefined ? "GET" : "POST",
          headers: { "x-fizz-instance": "inst-2" },
          ...(body === undefined ? {} : { body }),
        });
        expect(res.status).to.equal(421);
        expect(res.error().code).to.equal("MISDIRECTED");
      }
    });

    it("sends any path carrying X-Fizz-Instance to the function, internal paths included", async () => {
      for (const path of ["/healthz", "/v2/specialize", "/some/path?x=1"]) {
        expect((await request(rt.url, { path, headers: ME })).text, path).to.equal(
          "Hello, world!\n",
        );
      }
    });

    it("serves requests without X-Fizz-Instance on non-internal paths (direct benchmark traffic)", async () => {
      expect((await request(rt.url, { path: "/bench" })).text).to.equal("Hello, world!\n");
    });

    it("keeps connections alive between requests, plain and chunked", async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const first = await request(rt.url, { method: "POST", headers: ME, body: "a", agent });
        const second = await request(rt.url, { headers: ME, agent });
        expect(second.status).to.equal(200);
        expect(second.text).to.equal("Hello, world!\n");
        expect(second.localPort).to.equal(first.localPort);
        const chunked = await request(rt.url, {
          method: "POST",
          headers: ME,
          body: ["a", "b"],
          agent,
        });
        expect(chunked.localPort).to.equal(first.localPort);
      } finally {
        agent.destroy();
      }
    });

    it("keeps the framing right after refusing a request whose body it did not read", async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        // A body that reads as a request if the runtime took it for the next one.
        const refused = await request(rt.url, {
          method: "POST",
          headers: { "x-fizz-instance": "x" },
          body: "GET / HTTP/1.1\r\n\r\n",
          agent,
        });
        expect(refused.status).to.equal(421);
        const next = await request(rt.url, { headers: ME, agent });
        expect(next.status).to.equal(200);
        expect(next.text).to.equal("Hello, world!\n");
      } finally {
        agent.destroy();
      }
    });
  });

  describe("when the code does not load", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.kill());

    for (const failure of fixtures.loadFailures) {
      it(`answers 500 FUNCTION_LOAD_FAILED naming file and line for ${failure.what}, then refuses traffic`, async () => {
        rt = await start();
        const res = await deploy.source(rt, failure);
        expect(res.status).to.equal(500);
        const error = res.error();
        expect(res.object().error).to.deep.equal({
          code: "FUNCTION_LOAD_FAILED",
          message: error.message,
          retryable: false,
        });
        if (typeof failure.message === "string") expect(error.message).to.equal(failure.message);
        else expect(error.message).to.match(failure.message);
        expect(await healthState(rt)).to.equal("failed");
        expect((await request(rt.url, { path: "/readyz" })).status).to.equal(503);
        const call = await request(rt.url, { headers: ME });
        expect(call.status).to.equal(503);
        expect(call.error().code).to.equal("NOT_SPECIALIZED");
        expect((await push(rt, hello)).status).to.equal(409);
      });
    }
  });

  if (deploy.compiled && !loadsSource) {
    describe("the JSON form with source (compiled language)", () => {
      let rt: Runtime;
      before(async () => (rt = await start()));
      after(() => rt.kill());

      it("answers 500 FUNCTION_LOAD_FAILED saying to deploy a package the builder compiles", async () => {
        // Not 400: the platform sent a well-formed request this runtime cannot load, so the
        // poolkeeper must not take it for a broken instance and retry on another one.
        const res = await push(rt, hello);
        expect(res.status, res.text).to.equal(500);
        expect(res.error().code).to.equal("FUNCTION_LOAD_FAILED");
        expect(res.error().message).to.match(/package|builder/i);
        expect(await healthState(rt)).to.equal("failed");
      });
    });
  }

  describe("handler shapes", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.kill());

    for (const shape of fixtures.handlerShapes) {
      it(`loads and calls ${shape.what}`, async () => {
        rt = await start();
        const res = await deploy.source(rt, shape);
        expect(res.status, res.text).to.equal(200);
        expect((await request(rt.url, { headers: ME })).text).to.equal(shape.answer);
      });
    }
  });

  describe("specialize token and code digest", () => {
    const TOKEN = "per-instance-token-0123456789abcdef";
    const { tokenLeak } = fixtures;
    const sha256 = (s: string) => `sha256:${createHash("sha256").update(s).digest("hex")}`;
    const body = () => ({
      ...specializeBody(tokenLeak.filename, tokenLeak.source),
      digest: sha256(tokenLeak.source),
    });
    let rt: Runtime;
    before(async () => (rt = await start({ FIZZ_SPECIALIZE_TOKEN: TOKEN })));
    after(() => rt.kill());

    it("refuses a specialize without the token, or with a wrong one, with 401, and stays warm", async () => {
      const attempts: Array<Record<string, string>> = [
        {},
        { "x-fizz-specialize-token": "guess" },
        { "x-fizz-specialize-token": "" },
      ];
      for (const headers of attempts) {
        const res = await postJson(rt.url, "/v2/specialize", body(), headers);
        expect(res.status).to.equal(401);
        expect(res.error().code).to.equal("UNAUTHENTICATED");
      }
      expect(await healthState(rt)).to.equal("warm");
    });

    it("refuses code that does not hash to its digest with 400 DIGEST_MISMATCH, and stays warm", async () => {
      const tampered = { ...body(), digest: sha256("something else") };
      const res = await postJson(rt.url, "/v2/specialize", tampered, {
        "x-fizz-specialize-token": TOKEN,
      });
      expect(res.status).to.equal(400);
      expect(res.error()).to.include({ code: "DIGEST_MISMATCH", field: "digest" });
      expect(await healthState(rt)).to.equal("warm");
    });

    it("refuses an archive-form specialize without the right token with 401, and stays warm", async () => {
      const archive = await packageArchive(await deploy.sourceFiles(tokenLeak));
      for (const headers of [{}, { "x-fizz-specialize-token": "guess" }]) {
        const res = await specializeArchive(rt, archive, { headers });
        expect(res.status).to.equal(401);
        expect(res.error().code).to.equal("UNAUTHENTICATED");
      }
      expect(await healthState(rt)).to.equal("warm");
    });

    it("specializes with the token, and the function cannot see the token", async () => {
      const res = await deploy.source(rt, tokenLeak, {
        withDigest: true,
        headers: { "x-fizz-specialize-token": TOKEN },
      });
      expect(res.status, res.text).to.equal(200);
      const call = await request(rt.url, { path: "/" });
      expect(call.status).to.equal(200);
      expect(call.text).to.equal("absent");
    });
  });
}
