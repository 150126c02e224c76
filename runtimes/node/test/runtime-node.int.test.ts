// Integration tests of the Node.js runtime (runtimes/node/server.mjs) against
// docs/runtime-contract.md: a real process, real HTTP.
import { expect } from "chai";
import http from "node:http";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Runtime,
  eventually,
  postJson,
  request,
  sleep,
  specialize,
  specializeBody,
  startRuntime,
  timedChunks,
} from "./harness.js";

const HELLO = `module.exports = async (context) => ({ status: 200, body: "Hello, world!\\n" });\n`;
const ME = { "x-fizz-instance": "inst-1" };

describe("node runtime", function () {
  this.timeout(20_000);

  describe("before specialization", () => {
    let rt: Runtime;
    before(async () => (rt = await startRuntime("node", { FIZZ_INSTANCE_ID: "inst-1" })));
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
        expect(res.json.error.code).to.equal("NOT_SPECIALIZED");
      }
    });

    it("refuses a malformed specialize with 400 naming the field, and stays warm", async () => {
      const good = specializeBody("hello.js", HELLO);
      const cases: Array<[unknown, string]> = [
        [{ ...good, code: undefined }, "code"],
        [{ ...good, code: "not base64!" }, "code"],
        [{ ...good, filename: "../escape.js" }, "filename"],
        [{ ...good, filename: "hello.py" }, "filename"],
        [{ ...good, function: undefined }, "function"],
        [
          { ...good, function: { namespace: "default", name: "hello", revision: "3" } },
          "function.revision",
        ],
        [{ ...good, entrypoint: "a/b" }, "entrypoint"],
        [{ ...good, concurrency: 0 }, "concurrency"],
        [{ ...good, env: { GREETING: 1 } }, "env.GREETING"],
        [[1, 2], "body"],
      ];
      for (const [body, field] of cases) {
        const res = await postJson(rt.url, "/v2/specialize", body);
        expect(res.status, field).to.equal(400);
        expect(res.json.error).to.include({ code: "VALIDATION_FAILED", field });
      }
      const notJson = await request(rt.url, { method: "POST", path: "/v2/specialize", body: "{" });
      expect(notJson.status).to.equal(400);
      expect(notJson.json.error.field).to.equal("body");
      expect((await request(rt.url, { path: "/healthz" })).json.state).to.equal("warm");
    });

    it("answers 421 to a specialize meant for another instance, and stays warm", async () => {
      const res = await specialize(rt, "hello.js", HELLO, { instanceId: "inst-2" });
      expect(res.status).to.equal(421);
      expect(res.json.error.code).to.equal("MISDIRECTED");
      expect((await request(rt.url, { path: "/healthz" })).json.state).to.equal("warm");
    });
  });

  describe("warming up while generic", () => {
    let rt: Runtime;
    let scratch: string;
    let workdir: string;
    before(async () => {
      scratch = mkdtempSync(join(tmpdir(), "fizz-node-tmp-"));
      workdir = mkdtempSync(join(tmpdir(), "fizz-node-test-"));
      const env = { FIZZ_INSTANCE_ID: "inst-1", FIZZ_WORKDIR: workdir, TMPDIR: scratch };
      rt = await startRuntime("node", env);
    });
    after(async () => {
      await rt.kill();
      rmSync(scratch, { recursive: true, force: true });
      rmSync(workdir, { recursive: true, force: true });
    });

    it("leaves no files, output or state behind that the function or its logs could see", async () => {
      await sleep(300); // time for the warm-up rehearsal, which runs after listen
      expect((await request(rt.url, { path: "/healthz" })).json.state).to.equal("warm");
      expect((await request(rt.url, { headers: ME })).status).to.equal(503);
      expect((await specialize(rt, "hello.js", HELLO)).status).to.equal(200);
      expect((await request(rt.url, { headers: ME })).text).to.equal("Hello, world!\n");
      await eventually(() => readdirSync(scratch).length === 0);
      expect(readdirSync(workdir).sort()).to.deep.equal(["hello.js", "package.json"]);
      const lines = rt.stderr().trim().split("\n");
      expect(lines).to.have.length(2);
      expect(lines[0]).to.match(/listening/);
      expect(lines[1]).to.match(/specialized default\/hello@3/);
      expect(rt.stdout()).to.equal("");
    });
  });

  describe("with Fission's hello world", () => {
    let rt: Runtime;
    let workdir: string;
    before(async () => {
      workdir = mkdtempSync(join(tmpdir(), "fizz-node-test-"));
      rt = await startRuntime("node", { FIZZ_INSTANCE_ID: "inst-1", FIZZ_WORKDIR: workdir });
    });
    after(async () => {
      await rt.kill();
      rmSync(workdir, { recursive: true, force: true });
    });

    it("specializes and answers Hello, world!", async () => {
      const res = await specialize(rt, "hello.js", HELLO, { instanceId: "inst-1" });
      expect(res.status).to.equal(200);
      expect(res.json.status).to.equal("specialized");
      expect(res.json.loadMs).to.be.a("number");
      const hello = await request(rt.url, { path: "/", headers: ME });
      expect(hello.status).to.equal(200);
      expect(hello.text).to.equal("Hello, world!\n");
      expect(hello.headers["content-type"]).to.match(/^text\/plain/);
    });

    it("writes the code into FIZZ_WORKDIR under the user's file name", () => {
      expect(readdirSync(workdir)).to.include("hello.js");
    });

    it("reports state specialized on /healthz and 200 on /readyz", async () => {
      expect((await request(rt.url, { path: "/healthz" })).json).to.deep.equal({
        status: "ok",
        state: "specialized",
      });
      expect((await request(rt.url, { path: "/readyz" })).status).to.equal(200);
    });

    it("refuses a second specialize with 409 ALREADY_SPECIALIZED", async () => {
      const res = await specialize(rt, "hello.js", HELLO);
      expect(res.status).to.equal(409);
      expect(res.json.error.code).to.equal("ALREADY_SPECIALIZED");
    });

    it("answers 421 to a request meant for another instance", async () => {
      const res = await request(rt.url, { headers: { "x-fizz-instance": "inst-2" } });
      expect(res.status).to.equal(421);
      expect(res.json.error.code).to.equal("MISDIRECTED");
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

    it("keeps connections alive between requests", async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const first = await request(rt.url, { headers: ME, agent });
        const second = await request(rt.url, { headers: ME, agent });
        expect(second.status).to.equal(200);
        expect(second.localPort).to.equal(first.localPort);
      } finally {
        agent.destroy();
      }
    });
  });

  describe("when the code does not load", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.kill());

    const failures: Array<[string, string, string, string | undefined]> = [
      [
        "a syntax error",
        "hello.js",
        "module.exports = async () => 1;\n\nlet x y = 2;\n",
        undefined,
      ],
      [
        "a syntax error in an ES module",
        "hello.mjs",
        "export default () => 1;\nlet x y = 2;\n",
        undefined,
      ],
      [
        "a throw at the top level",
        "hello.js",
        "const a = 1;\nthrow new Error('boom');\n",
        undefined,
      ],
      ["a missing dependency", "hello.js", "\nconst pad = require('left-pad');\n", undefined],
      ["a missing entrypoint", "hello.js", "module.exports = async () => 1;\n", "handler"],
    ];
    const expected = [
      "hello.js:3: SyntaxError: Unexpected identifier 'y'",
      "hello.mjs:2: SyntaxError: Unexpected identifier 'y'",
      "hello.js:2: Error: boom",
      "hello.js:2: Error: Cannot find module 'left-pad'",
      'hello.js: entrypoint "handler" is not an exported function',
    ];

    failures.forEach(([what, filename, source, entrypoint], i) => {
      it(`answers 500 FUNCTION_LOAD_FAILED naming file and line for ${what}, then refuses traffic`, async () => {
        rt = await startRuntime("node");
        const res = await specialize(rt, filename, source, entrypoint ? { entrypoint } : {});
        expect(res.status).to.equal(500);
        expect(res.json.error).to.deep.equal({
          code: "FUNCTION_LOAD_FAILED",
          message: expected[i],
          retryable: false,
        });
        expect((await request(rt.url, { path: "/healthz" })).json.state).to.equal("failed");
        expect((await request(rt.url, { path: "/readyz" })).status).to.equal(503);
        const call = await request(rt.url, { headers: ME });
        expect(call.status).to.equal(503);
        expect(call.json.error.code).to.equal("NOT_SPECIALIZED");
        expect((await specialize(rt, "hello.js", HELLO)).status).to.equal(409);
      });
    });
  });

  describe("module formats and entrypoints", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.kill());

    const formats: Array<[string, string, string, string | undefined]> = [
      ["module.exports = fn", "hello.js", "module.exports = () => 'cjs';", undefined],
      [
        "export default in a .js file",
        "hello.js",
        "export default async () => 'esm-in-js';",
        undefined,
      ],
      [
        "a named ES export chosen by the entrypoint",
        "hello.mjs",
        "export const handler = () => 'mjs';",
        "handler",
      ],
      [
        "file.fn in a .cjs file",
        "hello.cjs",
        "exports.handler = () => 'cjs-named';",
        "hello.handler",
      ],
      [
        "exports.default from a transpiler",
        "hello.js",
        "exports.__esModule = true; exports.default = () => 'ts';",
        undefined,
      ],
    ];

    for (const [what, filename, source, entrypoint] of formats) {
      it(`loads ${what}`, async () => {
        rt = await startRuntime("node");
        const res = await specialize(rt, filename, source, entrypoint ? { entrypoint } : {});
        expect(res.status, res.text).to.equal(200);
        const expectedBody = /'([^']+)'/.exec(source)?.[1];
        expect((await request(rt.url, { headers: ME })).text).to.equal(expectedBody);
      });
    }
  });

  describe("a specialized function", () => {
    let rt: Runtime;
    const source = `
      const { Readable } = require("node:stream");
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      module.exports = async (context) => {
        const { request } = context;
        switch (context.query.kind) {
          case "echo":
            return {
              method: context.method, path: context.path, query: context.query, url: request.url,
              headers: context.headers, body: context.body, params: context.params,
              function: context.function, requestId: context.requestId,
              bodyType: Buffer.isBuffer(context.body) ? "buffer" : typeof context.body,
              rawLength: request.rawBody.length, same: request.body === context.body,
            };
          case "json": return { hello: ["world"] };
          case "response": return { status: 201, headers: { "x-custom": "yes" }, body: { created: true } };
          case "status-only": return { status: 302, headers: { location: "/elsewhere" } };
          case "not-a-response": return { status: "ok" };
          case "buffer": return Buffer.from([0, 1, 2, 255]);
          case "string": return "plain";
          case "nothing": return undefined;
          case "env": return process.env.GREETING;
          case "log": console.log("log line from the function"); return "logged";
          case "throw": throw new Error("boom from the function");
          case "bad-status": return { status: 42 };
          case "sse": {
            async function* events() {
              for (let i = 1; i <= 3; i++) { yield "data: event " + i + "\\n\\n"; await sleep(150); }
            }
            return { headers: { "content-type": "text/event-stream" }, body: Readable.from(events()) };
          }
          case "web-stream": {
            const parts = ["web ", "stream"];
            return new ReadableStream({ pull(c) { const p = parts.shift(); p ? c.enqueue(p) : c.close(); } });
          }
          default: return "default";
        }
      };
    `;
    before(async () => {
      rt = await startRuntime("node", { FIZZ_INSTANCE_ID: "inst-1" });
      const res = await specialize(rt, "echo.js", source, { env: { GREETING: "hi from env" } });
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
          "x-extra": "value",
        },
        body: JSON.stringify({ n: 1, list: [true] }),
      });
      expect(res.status).to.equal(200);
      expect(res.json).to.include({
        method: "POST",
        path: "/users/42/orders",
        requestId: "req-123",
        same: true,
      });
      expect(res.json.url).to.equal("/users/42/orders?kind=echo&tag=a&tag=b");
      expect(res.json.query).to.deep.equal({ kind: "echo", tag: ["a", "b"] });
      expect(res.json.headers).to.include({ "x-extra": "value", "x-request-id": "req-123" });
      expect(res.json.params).to.deep.equal({ userId: "42" });
      expect(res.json.body).to.deep.equal({ n: 1, list: [true] });
      expect(res.json.function).to.deep.equal({ namespace: "default", name: "hello", revision: 3 });
      expect(res.json.rawLength).to.equal(JSON.stringify({ n: 1, list: [true] }).length);
    });

    it("gives text bodies as strings, other bodies as Buffers, and makes up a request id", async () => {
      const text = await request(rt.url, {
        method: "POST",
        path: "/?kind=echo",
        headers: { ...ME, "content-type": "text/plain" },
        body: "héllo",
      });
      expect(text.json).to.include({ body: "héllo", bodyType: "string" });
      expect(text.json.requestId).to.match(/^[0-9a-f-]{36}$/);
      const binary = await request(rt.url, {
        method: "PUT",
        path: "/?kind=echo",
        headers: { ...ME, "content-type": "application/octet-stream" },
        body: [Buffer.from([1, 2]), Buffer.from([3])], // chunked upload
      });
      expect(binary.json).to.include({ bodyType: "buffer", rawLength: 3 });
    });

    it("answers 400 INVALID_BODY to a JSON request whose body is not JSON", async () => {
      const res = await request(rt.url, {
        method: "POST",
        path: "/?kind=echo",
        headers: { ...ME, "content-type": "application/json" },
        body: "{not json",
      });
      expect(res.status).to.equal(400);
      expect(res.json.error.code).to.equal("INVALID_BODY");
    });

    it("answers a returned object as JSON", async () => {
      const res = await request(rt.url, { path: "/?kind=json", headers: ME });
      expect(res.headers["content-type"]).to.match(/^application\/json/);
      expect(res.json).to.deep.equal({ hello: ["world"] });
    });

    it("answers a response object with its status, headers and body", async () => {
      const res = await request(rt.url, { path: "/?kind=response", headers: ME });
      expect(res.status).to.equal(201);
      expect(res.headers["x-custom"]).to.equal("yes");
      expect(res.json).to.deep.equal({ created: true });
      const redirect = await request(rt.url, { path: "/?kind=status-only", headers: ME });
      expect(redirect.status).to.equal(302);
      expect(redirect.headers.location).to.equal("/elsewhere");
    });

    it("answers an object with a non-numeric status as plain JSON", async () => {
      const res = await request(rt.url, { path: "/?kind=not-a-response", headers: ME });
      expect(res.status).to.equal(200);
      expect(res.json).to.deep.equal({ status: "ok" });
    });

    it("answers a Buffer as application/octet-stream and a string as text/plain", async () => {
      const binary = await request(rt.url, { path: "/?kind=buffer", headers: ME });
      expect(binary.headers["content-type"]).to.equal("application/octet-stream");
      expect([...binary.body]).to.deep.equal([0, 1, 2, 255]);
      const text = await request(rt.url, { path: "/?kind=string", headers: ME });
      expect(text.headers["content-type"]).to.match(/^text\/plain/);
      expect(text.text).to.equal("plain");
    });

    it("answers undefined with 204", async () => {
      const res = await request(rt.url, { path: "/?kind=nothing", headers: ME });
      expect(res.status).to.equal(204);
      expect(res.body.length).to.equal(0);
    });

    it("streams a Readable body chunk by chunk, so server-sent events arrive as they are sent", async () => {
      const res = await timedChunks(rt.url, "/?kind=sse", ME);
      expect(res.status).to.equal(200);
      expect(res.headers["content-type"]).to.equal("text/event-stream");
      expect(res.headers["transfer-encoding"]).to.equal("chunked");
      expect(res.chunks.map((c) => c.data)).to.deep.equal([
        "data: event 1\n\n",
        "data: event 2\n\n",
        "data: event 3\n\n",
      ]);
      const [first, , last] = res.chunks;
      expect(last!.at - first!.at).to.be.greaterThan(200);
    });

    it("streams a web ReadableStream body", async () => {
      const res = await request(rt.url, { path: "/?kind=web-stream", headers: ME });
      expect(res.status).to.equal(200);
      expect(res.headers["transfer-encoding"]).to.equal("chunked");
      expect(res.text).to.equal("web stream");
    });

    it("gives the function the environment from specialize and lets console.log reach stdout", async () => {
      expect((await request(rt.url, { path: "/?kind=env", headers: ME })).text).to.equal(
        "hi from env",
      );
      expect((await request(rt.url, { path: "/?kind=log", headers: ME })).text).to.equal("logged");
      await eventually(() => rt.stdout().includes("log line from the function"));
    });

    it("answers 500 FUNCTION_ERROR when the function throws, and keeps serving", async () => {
      const res = await request(rt.url, { path: "/?kind=throw", headers: ME });
      expect(res.status).to.equal(500);
      expect(res.json.error).to.include({
        code: "FUNCTION_ERROR",
        message: "boom from the function",
      });
      expect((await request(rt.url, { path: "/?kind=string", headers: ME })).text).to.equal(
        "plain",
      );
    });

    it("answers 500 FUNCTION_ERROR to a response object with an impossible status", async () => {
      const res = await request(rt.url, { path: "/?kind=bad-status", headers: ME });
      expect(res.status).to.equal(500);
      expect(res.json.error.code).to.equal("FUNCTION_ERROR");
    });
  });

  describe("with concurrency 1 and a slow function", () => {
    let rt: Runtime;
    before(async () => {
      rt = await startRuntime("node");
      const slow =
        "module.exports = async () => { await new Promise((r) => setTimeout(r, 400)); return 'done'; };";
      expect((await specialize(rt, "slow.js", slow, { concurrency: 1 })).status).to.equal(200);
    });
    after(() => rt.kill());

    it("runs one call, queues one, and answers 429 INSTANCE_BUSY with Retry-After to the rest", async () => {
      const results = await Promise.all([1, 2, 3, 4].map(() => request(rt.url, { headers: ME })));
      const statuses = results.map((r) => r.status).sort();
      expect(statuses).to.deep.equal([200, 200, 429, 429]);
      for (const busy of results.filter((r) => r.status === 429)) {
        expect(busy.headers["retry-after"]).to.equal("1");
        expect(busy.json.error.code).to.equal("INSTANCE_BUSY");
      }
      expect((await request(rt.url, { headers: ME })).status).to.equal(200);
    });
  });

  describe("on SIGTERM", () => {
    let rt: Runtime;
    before(async () => {
      rt = await startRuntime("node");
      const slow =
        "module.exports = async () => { await new Promise((r) => setTimeout(r, 400)); return 'finished'; };";
      expect((await specialize(rt, "slow.js", slow)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("finishes the call in flight, stops accepting, and exits 0", async () => {
      const inFlight = request(rt.url, { headers: ME });
      await sleep(100);
      rt.proc.kill("SIGTERM");
      const res = await inFlight;
      expect(res.status).to.equal(200);
      expect(res.text).to.equal("finished");
      expect(await rt.exited).to.equal(0);
      let refused = false;
      await request(rt.url, { path: "/healthz" }).catch(() => (refused = true));
      expect(refused).to.equal(true);
    });
  });
  describe("under the process backend (FIZZ_PARENT_STDIN=1)", () => {
    let rt: Runtime;
    before(async () => {
      rt = await startRuntime("node", { FIZZ_PARENT_STDIN: "1" }, { stdinPipe: true });
      const slow =
        "module.exports = async () => { await new Promise((r) => setTimeout(r, 300)); return 'finished'; };";
      expect((await specialize(rt, "slow.js", slow)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("finishes the call in flight and exits 0 when its parent closes stdin", async () => {
      const inFlight = request(rt.url, { headers: ME });
      await sleep(100);
      rt.proc.stdin!.end();
      expect((await inFlight).text).to.equal("finished");
      expect(await rt.exited).to.equal(0);
    });
  });
});
