// The runtime contract (docs/runtime-contract.md), part 2: a specialized instance serving calls:
// the context a function sees, how return values are answered, errors, the instance's limits
// (concurrency, body size) and its shutdown (SIGTERM, the parent closing stdin).
import { expect } from "chai";
import { type Runtime, eventually, request } from "./harness.js";
import { ME } from "./contract-lifecycle.js";
import { describeLimits } from "./contract-limits.js";
import type { Deployer } from "./deploy.js";
import type { RuntimeUnderTest } from "./runtime-under-test.js";

export function describeCalls(
  { start, fixtures, callMarkers, twicePrinter }: RuntimeUnderTest,
  deploy: Deployer,
): void {
  describe("a specialized function", () => {
    let rt: Runtime;
    const call = (kind: string, extra = "") =>
      request(rt.url, { path: `/?kind=${kind}${extra}`, headers: ME });
    before(async () => {
      rt = await start({ FIZZ_INSTANCE_ID: "inst-1" });
      const res = await deploy.source(rt, fixtures.kinds, { env: { GREETING: "hi from env" } });
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("passes method, path, query, headers, route params, function and JSON body in the context", async () => {
      const res = await request(rt.url, {
        method: "POST",
        path: "/users/42/orders?kind=echo&tag=a&tag=b",
        headers: {
          ...ME,
          "content-type": "application/json",
          "x-request-id": "req-123",
          "X-Fizz-Params-userId": "42",
          "X-Extra": "value",
        },
        body: JSON.stringify({ n: 1, list: [true] }),
      });
      expect(res.status, res.text).to.equal(200);
      const context = res.object();
      expect(context).to.include({
        method: "POST",
        path: "/users/42/orders",
        requestId: "req-123",
      });
      expect(context.query).to.have.property("kind", "echo");
      expect(context.headers).to.include({
        "x-extra": "value",
        "x-request-id": "req-123",
        "content-type": "application/json",
      });
      expect(context.params).to.deep.equal({ userId: "42" });
      expect(context.body).to.deep.equal({ n: 1, list: [true] });
      expect(context.function).to.deep.equal({ namespace: "default", name: "hello", revision: 3 });
    });

    it("makes up a request id when the request carries none", async () => {
      const res = await request(rt.url, {
        method: "POST",
        path: "/?kind=echo",
        headers: { ...ME, "content-type": "application/json" },
        body: "{}",
      });
      expect(res.object().requestId).to.match(/^[0-9a-f-]{36}$/);
    });

    it("reads Content-Length and chunked bodies, and decodes text", async () => {
      for (const body of ["héllo", ["hé", "llo"]]) {
        const res = await request(rt.url, {
          method: "POST",
          path: "/?kind=text",
          headers: ME,
          body,
        });
        expect(res.json, JSON.stringify(body)).to.deep.equal({ text: "héllo", length: 6 });
      }
    });

    it("answers 400 INVALID_BODY to a JSON request whose body is not JSON", async () => {
      const res = await request(rt.url, {
        method: "POST",
        path: "/?kind=echo",
        headers: { ...ME, "content-type": "application/json" },
        body: "{not json",
      });
      expect(res.status).to.equal(400);
      expect(res.error().code).to.equal("INVALID_BODY");
    });

    it("answers a returned object or array as JSON", async () => {
      const object = await call("json");
      expect(object.headers["content-type"]).to.match(/^application\/json/);
      expect(object.json).to.deep.equal({ hello: ["world"] });
      const list = await call("list");
      expect(list.headers["content-type"]).to.match(/^application\/json/);
      expect(list.json).to.deep.equal([1, "two"]);
    });

    it("answers with the status and headers the function gives", async () => {
      const created = await call("created");
      expect(created.status).to.equal(201);
      expect(created.headers["x-custom"]).to.equal("yes");
      expect(created.json).to.deep.equal({ created: true });
      const accepted = await call("accepted");
      expect(accepted.status).to.equal(202);
      expect(accepted.text).to.equal("accepted");
    });

    it("answers an object with a non-numeric status as plain JSON", async () => {
      const res = await call("not-a-response");
      expect(res.status).to.equal(200);
      expect(res.json).to.deep.equal({ status: "ok" });
    });

    it("answers bytes as application/octet-stream and a string as text/plain", async () => {
      const binary = await call("bytes");
      expect(binary.headers["content-type"]).to.equal("application/octet-stream");
      expect([...binary.body]).to.deep.equal([0, 1, 2, 255]);
      const text = await call("string");
      expect(text.headers["content-type"]).to.match(/^text\/plain/);
      expect(text.text).to.equal("plain");
    });

    it("gives the function the environment from specialize and lets its output reach stdout", async () => {
      expect((await call("env")).text).to.equal("hi from env");
      expect((await call("log")).text).to.equal("logged");
      await eventually(() => rt.stdout().includes("log line from the function"));
    });

    it("answers 500 FUNCTION_ERROR when the function throws, and keeps serving", async () => {
      const res = await call("throw");
      expect(res.status).to.equal(500);
      const error = res.error();
      expect(error.code).to.equal("FUNCTION_ERROR");
      expect(error.message).to.include("boom from the function");
      expect((await call("string")).text).to.equal("plain");
    });

    it("logs the error with the user's file and the line that threw", async () => {
      const { filename, source } = fixtures.kinds;
      const line = source.split("\n").findIndex((l) => l.includes("boom from the function")) + 1;
      expect(line, "the kinds fixture throws on a line of its own").to.be.above(0);
      const where = new RegExp(`${filename.replace(/[.]/g, "\\.")}\\D{1,12}${line}\\b`);
      await call("throw");
      await eventually(() => where.test(rt.stderr() + rt.stdout()));
    });

    it("answers 500 FUNCTION_ERROR to a return value it cannot send", async () => {
      const res = await call("unsendable");
      expect(res.status).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_ERROR");
    });
  });

  describe("with FIZZ_MAX_BODY_BYTES", () => {
    // Room for the specialize body of Fission's hello world, which the limit also applies to.
    const LIMIT = 2048;
    let rt: Runtime;
    before(async () => {
      rt = await start({ FIZZ_MAX_BODY_BYTES: String(LIMIT) });
      expect((await deploy.source(rt, fixtures.hello)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("refuses a larger body, sent whole or chunked, with 413 PAYLOAD_TOO_LARGE, and keeps serving", async () => {
      const half = "x".repeat(LIMIT / 2 + 1);
      for (const body of ["x".repeat(LIMIT + 1), [half, half]]) {
        const res = await request(rt.url, { method: "POST", headers: ME, body });
        expect(res.status, typeof body === "string" ? "whole" : "chunked").to.equal(413);
        expect(res.error().code).to.equal("PAYLOAD_TOO_LARGE");
      }
      const fits = await request(rt.url, { method: "POST", headers: ME, body: "x".repeat(LIMIT) });
      expect(fits.status).to.equal(200);
      expect(fits.text).to.equal("Hello, world!\n");
    });
  });

  const printer = callMarkers?.logs ?? twicePrinter;
  describeLimits(
    start,
    {
      deploy: (rt, ms, options) => deploy.source(rt, fixtures.slow(ms, "finished"), options),
      path: () => "/",
      answer: "finished",
    },
    printer && ((rt, options) => deploy.source(rt, printer, options)),
  );
}
