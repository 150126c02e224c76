// Integration tests of the Python runtime (runtimes/python/server.py, run with `python3` from PATH)
// against docs/runtime-contract.md: a real process, real HTTP.
import { expect } from "chai";
import http from "node:http";
import {
  type Runtime,
  eventually,
  postJson,
  request,
  sleep,
  specialize,
  specializeBody,
  startRuntime,
} from "../../node/test/harness.js";

const HELLO = `def main(context):\n    print("Hello, world!")\n`;
const ME = { "x-fizz-instance": "inst-1" };

describe("python runtime", function () {
  this.timeout(20_000);

  describe("before specialization", () => {
    let rt: Runtime;
    before(async () => (rt = await startRuntime("python", { FIZZ_INSTANCE_ID: "inst-1" })));
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
      const good = specializeBody("hello.py", HELLO);
      const cases: Array<[unknown, string]> = [
        [{ ...good, code: undefined }, "code"],
        [{ ...good, code: "not base64!" }, "code"],
        [{ ...good, filename: "../escape.py" }, "filename"],
        [{ ...good, filename: "hello.js" }, "filename"],
        [{ ...good, function: undefined }, "function"],
        [
          { ...good, function: { namespace: "default", name: "hello", revision: true } },
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
      const res = await specialize(rt, "hello.py", HELLO, { instanceId: "inst-2" });
      expect(res.status).to.equal(421);
      expect(res.json.error.code).to.equal("MISDIRECTED");
      expect((await request(rt.url, { path: "/healthz" })).json.state).to.equal("warm");
    });
  });

  describe("with Fission's hello world", () => {
    let rt: Runtime;
    before(async () => (rt = await startRuntime("python", { FIZZ_INSTANCE_ID: "inst-1" })));
    after(() => rt.kill());

    it("specializes and answers with what main printed", async () => {
      const res = await specialize(rt, "hello.py", HELLO, { instanceId: "inst-1" });
      expect(res.status).to.equal(200);
      expect(res.json.status).to.equal("specialized");
      expect(res.json.loadMs).to.be.a("number");
      const hello = await request(rt.url, { path: "/", headers: ME });
      expect(hello.status).to.equal(200);
      expect(hello.text).to.equal("Hello, world!\n");
      expect(hello.headers["content-type"]).to.match(/^text\/plain/);
      await eventually(() => rt.stdout().includes("Hello, world!\n")); // printed output also reaches the log
    });

    it("reports state specialized on /healthz and 200 on /readyz", async () => {
      expect((await request(rt.url, { path: "/healthz" })).json).to.deep.equal({
        status: "ok",
        state: "specialized",
      });
      expect((await request(rt.url, { path: "/readyz" })).status).to.equal(200);
    });

    it("refuses a second specialize with 409 ALREADY_SPECIALIZED", async () => {
      const res = await specialize(rt, "hello.py", HELLO);
      expect(res.status).to.equal(409);
      expect(res.json.error.code).to.equal("ALREADY_SPECIALIZED");
    });

    it("answers 421 to a request meant for another instance", async () => {
      const res = await request(rt.url, {
        method: "POST",
        headers: { "x-fizz-instance": "inst-2" },
        body: "x",
      });
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

    it("keeps connections alive with correct framing, also after a refused request with a body", async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const first = await request(rt.url, {
          method: "POST",
          headers: ME,
          body: "some body",
          agent,
        });
        const second = await request(rt.url, { headers: ME, agent });
        expect(second.text).to.equal("Hello, world!\n");
        expect(second.localPort).to.equal(first.localPort);
        const chunked = await request(rt.url, {
          method: "POST",
          headers: ME,
          body: ["a", "b"],
          agent,
        });
        expect(chunked.localPort).to.equal(first.localPort);
        // 421 without reading the body: the runtime must close rather than misread the body.
        const refused = await request(rt.url, {
          method: "POST",
          headers: { "x-fizz-instance": "x" },
          body: "GET / HTTP/1.1\r\n\r\n",
          agent,
        });
        expect(refused.status).to.equal(421);
        expect(refused.headers.connection).to.equal("close");
        expect((await request(rt.url, { headers: ME, agent })).text).to.equal("Hello, world!\n");
      } finally {
        agent.destroy();
      }
    });
  });

  describe("when the code does not load", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.kill());

    const failures: Array<[string, string, string | undefined, RegExp]> = [
      [
        "Fission's Python 2 hello world",
        `def main():\n    print "Hello, world!"\n`,
        undefined,
        /^hello\.py:2: SyntaxError: Missing parentheses in call to 'print'\. Did you mean print\(.*\)\?$/,
      ],
      [
        "an indentation error",
        `def main():\nreturn 1\n`,
        undefined,
        /^hello\.py:2: IndentationError: /,
      ],
      [
        "a raise at the top level",
        `x = 1\nraise RuntimeError("boom")\n`,
        undefined,
        /^hello\.py:2: RuntimeError: boom$/,
      ],
      [
        "a missing module",
        `\nimport left_pad\n`,
        undefined,
        /^hello\.py:2: ModuleNotFoundError: No module named 'left_pad'$/,
      ],
      [
        "a missing entrypoint",
        `def main(context):\n    return "x"\n`,
        "handler",
        /^hello\.py: entrypoint "handler" is not a function/,
      ],
      ["no main at all", `x = 1\n`, undefined, /^hello\.py: entrypoint "main" is not a function/],
    ];

    for (const [what, source, entrypoint, message] of failures) {
      it(`answers 500 FUNCTION_LOAD_FAILED naming file and line for ${what}, then refuses traffic`, async () => {
        rt = await startRuntime("python");
        const res = await specialize(rt, "hello.py", source, entrypoint ? { entrypoint } : {});
        expect(res.status).to.equal(500);
        expect(res.json.error.code).to.equal("FUNCTION_LOAD_FAILED");
        expect(res.json.error.message).to.match(message);
        expect((await request(rt.url, { path: "/healthz" })).json.state).to.equal("failed");
        expect((await request(rt.url, { path: "/readyz" })).status).to.equal(503);
        const call = await request(rt.url, { headers: ME });
        expect(call.status).to.equal(503);
        expect(call.json.error.code).to.equal("NOT_SPECIALIZED");
        expect((await specialize(rt, "hello.py", HELLO)).status).to.equal(409);
      });
    }
  });

  describe("entrypoints", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.kill());

    const variants: Array<[string, string, string | undefined]> = [
      ["def main() without parameters", `def main():\n    return "no-params"\n`, undefined],
      [
        "a function named by the entrypoint",
        `def handler(context):\n    return "named"\n`,
        "handler",
      ],
      ["file.fn", `def handler(context):\n    return "file-fn"\n`, "hello.handler"],
    ];
    for (const [what, source, entrypoint] of variants) {
      it(`calls ${what}`, async () => {
        rt = await startRuntime("python");
        const res = await specialize(rt, "hello.py", source, entrypoint ? { entrypoint } : {});
        expect(res.status, res.text).to.equal(200);
        expect((await request(rt.url, { headers: ME })).text).to.equal(
          /"([^"]+)"/.exec(source)?.[1],
        );
      });
    }
  });

  describe("a specialized function", () => {
    let rt: Runtime;
    const source = [
      "import os, time",
      "",
      "def main(context):",
      "    kind = context.query.get('kind')",
      "    if kind == 'echo':",
      "        return {'method': context.method, 'path': context.path, 'query': context.query,",
      "                'headers': context.headers, 'json': context.json(), 'params': context.params,",
      "                'request_id': context.request_id, 'function': context.function}",
      "    if kind == 'text':",
      "        return {'text': context.text(), 'length': len(context.body)}",
      "    if kind == 'tuple':",
      "        return {'created': True}, 201, {'X-Custom': 'yes'}",
      "    if kind == 'pair':",
      "        return 'accepted', 202",
      "    if kind == 'bytes':",
      "        return bytes([0, 1, 2, 255])",
      "    if kind == 'list':",
      "        return [1, 'two']",
      "    if kind == 'env':",
      "        return os.environ['GREETING']",
      "    if kind == 'raise':",
      "        raise ValueError('boom from the function')",
      "    if kind == 'printer':",
      "        for i in range(5):",
      "            print(context.query['id'], i)",
      "            time.sleep(0.02)",
      "        return None",
      "    if kind == 'unsupported':",
      "        return 42",
      "    return 'plain'",
      "",
    ].join("\n");
    before(async () => {
      rt = await startRuntime("python", { FIZZ_INSTANCE_ID: "inst-1" });
      const res = await specialize(rt, "echo.py", source, { env: { GREETING: "hi from env" } });
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("passes method, path, query, headers, route params, function and body in the context", async () => {
      const res = await request(rt.url, {
        method: "POST",
        path: "/users/42?kind=echo&tag=a&tag=b",
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
      expect(res.json).to.include({ method: "POST", path: "/users/42", request_id: "req-123" });
      expect(res.json.query).to.deep.equal({ kind: "echo", tag: "a" });
      expect(res.json.headers).to.include({
        "x-extra": "value",
        "content-type": "application/json",
      });
      expect(res.json.params).to.deep.equal({ userId: "42" });
      expect(res.json.json).to.deep.equal({ n: 1, list: [true] });
      expect(res.json.function).to.deep.equal({ namespace: "default", name: "hello", revision: 3 });
    });

    it("reads Content-Length and chunked bodies, and decodes text", async () => {
      const whole = await request(rt.url, {
        method: "POST",
        path: "/?kind=text",
        headers: ME,
        body: "héllo",
      });
      expect(whole.json).to.deep.equal({ text: "héllo", length: 6 });
      const chunked = await request(rt.url, {
        method: "POST",
        path: "/?kind=text",
        headers: ME,
        body: ["hé", "llo"],
      });
      expect(chunked.json).to.deep.equal({ text: "héllo", length: 6 });
    });

    it("answers 400 INVALID_BODY when context.json() meets a body that is not JSON", async () => {
      const res = await request(rt.url, {
        method: "POST",
        path: "/?kind=echo",
        headers: { ...ME, "content-type": "application/json" },
        body: "{not json",
      });
      expect(res.status).to.equal(400);
      expect(res.json.error.code).to.equal("INVALID_BODY");
    });

    it("answers a dict or list as JSON", async () => {
      const res = await request(rt.url, { path: "/?kind=list", headers: ME });
      expect(res.headers["content-type"]).to.match(/^application\/json/);
      expect(res.json).to.deep.equal([1, "two"]);
    });

    it("answers a (body, status, headers) tuple with that status and those headers", async () => {
      const res = await request(rt.url, { path: "/?kind=tuple", headers: ME });
      expect(res.status).to.equal(201);
      expect(res.headers["x-custom"]).to.equal("yes");
      expect(res.json).to.deep.equal({ created: true });
      const pair = await request(rt.url, { path: "/?kind=pair", headers: ME });
      expect(pair.status).to.equal(202);
      expect(pair.text).to.equal("accepted");
    });

    it("answers bytes as application/octet-stream and str as text/plain", async () => {
      const binary = await request(rt.url, { path: "/?kind=bytes", headers: ME });
      expect(binary.headers["content-type"]).to.equal("application/octet-stream");
      expect([...binary.body]).to.deep.equal([0, 1, 2, 255]);
      const text = await request(rt.url, { path: "/", headers: ME });
      expect(text.headers["content-type"]).to.match(/^text\/plain/);
      expect(text.text).to.equal("plain");
    });

    it("answers None with the call's own printed output, even when calls run side by side", async () => {
      const ids = ["alpha", "beta", "gamma"];
      const results = await Promise.all(
        ids.map((id) => request(rt.url, { path: `/?kind=printer&id=${id}`, headers: ME })),
      );
      results.forEach((res, i) => {
        const id = ids[i]!;
        expect(res.text).to.equal([0, 1, 2, 3, 4].map((n) => `${id} ${n}\n`).join(""));
      });
    });

    it("gives the function the environment from specialize", async () => {
      expect((await request(rt.url, { path: "/?kind=env", headers: ME })).text).to.equal(
        "hi from env",
      );
    });

    it("answers 500 FUNCTION_ERROR when the function raises, and keeps serving", async () => {
      const res = await request(rt.url, { path: "/?kind=raise", headers: ME });
      expect(res.status).to.equal(500);
      expect(res.json.error.code).to.equal("FUNCTION_ERROR");
      expect(res.json.error.message).to.include("boom from the function");
      expect((await request(rt.url, { path: "/", headers: ME })).text).to.equal("plain");
    });

    it("answers 500 FUNCTION_ERROR to a return value it cannot send", async () => {
      const res = await request(rt.url, { path: "/?kind=unsupported", headers: ME });
      expect(res.status).to.equal(500);
      expect(res.json.error.code).to.equal("FUNCTION_ERROR");
    });
  });

  describe("with concurrency 1 and a slow function", () => {
    let rt: Runtime;
    before(async () => {
      rt = await startRuntime("python");
      const slow = "import time\n\ndef main():\n    time.sleep(0.4)\n    return 'done'\n";
      expect((await specialize(rt, "slow.py", slow, { concurrency: 1 })).status).to.equal(200);
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
      rt = await startRuntime("python");
      const slow = "import time\n\ndef main():\n    time.sleep(0.4)\n    return 'finished'\n";
      expect((await specialize(rt, "slow.py", slow)).status).to.equal(200);
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
      rt = await startRuntime("python", { FIZZ_PARENT_STDIN: "1" }, { stdinPipe: true });
      const slow = "import time\n\ndef main():\n    time.sleep(0.3)\n    return 'finished'\n";
      expect((await specialize(rt, "slow.py", slow)).status).to.equal(200);
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
