// Integration tests of the Node.js runtime (runtimes/node/server.mjs): the shared runtime contract
// (runtimes/contract) with Node's fixtures, then what only Node does. A real process, real HTTP.
import { expect } from "chai";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packageArchive } from "../../contract/archive.js";
import {
  type Runtime,
  eventually,
  request,
  sleep,
  specializeArchive,
  timedChunks,
} from "../../contract/harness.js";
import {
  ME,
  checkLoadTimeWorker,
  describeRuntimeContract,
  markedRuntime,
  push,
  tagLines,
} from "../../contract/runtime-contract.js";
import { HELLO, KINDS, nodeRuntime } from "./fixtures.js";

describeRuntimeContract(nodeRuntime);

describe("node runtime: Node only", function () {
  this.timeout(20_000);

  describe("warming up while generic", () => {
    let rt: Runtime;
    let scratch: string;
    let workdir: string;
    before(async () => {
      scratch = mkdtempSync(join(tmpdir(), "fizz-node-tmp-"));
      workdir = mkdtempSync(join(tmpdir(), "fizz-node-test-"));
      // FIZZ_WARM_UP=1: warmed up even on a busy machine, which would skip what this checks.
      const env = {
        FIZZ_INSTANCE_ID: "inst-1",
        FIZZ_WORKDIR: workdir,
        TMPDIR: scratch,
        FIZZ_WARM_UP: "1",
      };
      rt = await nodeRuntime.start(env);
    });
    after(async () => {
      await rt.kill();
      rmSync(scratch, { recursive: true, force: true });
      rmSync(workdir, { recursive: true, force: true });
    });

    it("leaves no files, output or state behind that the function or its logs could see", async () => {
      await sleep(300); // time for the warm-up rehearsal, which runs after listen
      expect((await request(rt.url, { path: "/healthz" })).object().state).to.equal("warm");
      expect((await request(rt.url, { headers: ME })).status).to.equal(503);
      expect((await push(rt, HELLO)).status).to.equal(200);
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

  describe("a package with node_modules", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.kill());
    const dependency = {
      "node_modules/greeter/package.json": JSON.stringify({ name: "greeter", main: "lib.js" }),
      "node_modules/greeter/lib.js": "exports.greet = (who) => `hello, ${who}`;\n",
      "node_modules/esm-dep/package.json": JSON.stringify({
        name: "esm-dep",
        type: "module",
        exports: "./index.js",
      }),
      "node_modules/esm-dep/index.js": "export const shout = (s) => s.toUpperCase();\n",
    };

    it("resolves a dependency from the package's node_modules with require", async () => {
      rt = await nodeRuntime.start();
      const files = {
        ...dependency,
        "package.json": JSON.stringify({ name: "app", dependencies: { greeter: "1.0.0" } }),
        "index.js":
          "const { greet } = require('greeter');\nmodule.exports = () => greet('deps');\n",
      };
      const res = await specializeArchive(rt, await packageArchive(files));
      expect(res.status, res.text).to.equal(200);
      expect((await request(rt.url, { headers: ME })).text).to.equal("hello, deps");
    });

    it("resolves an ES module dependency through its exports with import", async () => {
      rt = await nodeRuntime.start();
      const files = {
        ...dependency,
        "package.json": JSON.stringify({ name: "app", type: "module" }),
        "index.js": "import { shout } from 'esm-dep';\nexport default () => shout('esm deps');\n",
      };
      const res = await specializeArchive(rt, await packageArchive(files));
      expect(res.status, res.text).to.equal(200);
      expect((await request(rt.url, { headers: ME })).text).to.equal("ESM DEPS");
    });

    it("refuses a package.json main outside the package", async () => {
      const workdir = mkdtempSync(join(tmpdir(), "fizz-node-main-"));
      try {
        writeFileSync(join(workdir, "outside.js"), "module.exports = () => 'outside';\n");
        rt = await nodeRuntime.start({ FIZZ_WORKDIR: workdir });
        const files = { "package.json": JSON.stringify({ main: "../outside.js" }) };
        const res = await specializeArchive(rt, await packageArchive(files));
        expect(res.status).to.equal(500);
        expect(res.error().message).to.include('"main" must name a file inside the package');
      } finally {
        rmSync(workdir, { recursive: true, force: true });
      }
    });

    it("names the line of the import when a dependency is missing", async () => {
      rt = await nodeRuntime.start();
      const files = { "index.js": "\nconst x = require('missing-dep');\n" };
      const res = await specializeArchive(rt, await packageArchive(files));
      expect(res.status).to.equal(500);
      expect(res.error().message).to.match(/^index\.js:2: Error: Cannot find module 'missing-dep'/);
    });
  });

  describe("a specialized function", () => {
    let rt: Runtime;
    const call = (kind: string) => request(rt.url, { path: `/?kind=${kind}`, headers: ME });
    before(async () => {
      rt = await nodeRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
      const res = await push(rt, KINDS);
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("gives repeated query keys as arrays, the raw URL and body, and context.body as request.body", async () => {
      const body = JSON.stringify({ n: 1, list: [true] });
      const res = await request(rt.url, {
        method: "POST",
        path: "/users/42/orders?kind=echo&tag=a&tag=b",
        headers: { ...ME, "content-type": "application/json" },
        body,
      });
      const context = res.object();
      expect(context.query).to.deep.equal({ kind: "echo", tag: ["a", "b"] });
      expect(context.url).to.equal("/users/42/orders?kind=echo&tag=a&tag=b");
      expect(context.rawLength).to.equal(body.length);
      expect(context.same).to.equal(true);
    });

    it("gives text bodies as strings and other bodies as Buffers", async () => {
      const text = await request(rt.url, {
        method: "POST",
        path: "/?kind=echo",
        headers: { ...ME, "content-type": "text/plain" },
        body: "héllo",
      });
      expect(text.object()).to.include({ body: "héllo", bodyType: "string" });
      const binary = await request(rt.url, {
        method: "PUT",
        path: "/?kind=echo",
        headers: { ...ME, "content-type": "application/octet-stream" },
        body: [Buffer.from([1, 2]), Buffer.from([3])], // chunked upload
      });
      expect(binary.object()).to.include({ bodyType: "buffer", rawLength: 3 });
    });

    it("answers a response object without a body with its status and headers", async () => {
      const redirect = await call("redirect");
      expect(redirect.status).to.equal(302);
      expect(redirect.headers.location).to.equal("/elsewhere");
    });

    it("answers undefined with 204", async () => {
      const res = await call("nothing");
      expect(res.status).to.equal(204);
      expect(res.body.length).to.equal(0);
    });

    it("answers the thrown error's message as it is", async () => {
      const res = await call("throw");
      expect(res.error()).to.include({ code: "FUNCTION_ERROR", message: "boom from the function" });
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
      const res = await call("web-stream");
      expect(res.status).to.equal(200);
      expect(res.headers["transfer-encoding"]).to.equal("chunked");
      expect(res.text).to.equal("web stream");
    });
  });

  describe("call markers", () => {
    // A timer started when the module loads runs outside any call: what it prints while a call
    // waits for it is not that call's, and the call's own next line is marked again.
    const WORKER = {
      filename: "worker.js",
      source: `
        const jobs = [];
        setInterval(() => {
          for (const [line, done] of jobs.splice(0)) { console.log(line); done(); }
        }, 10);
        module.exports = async ({ query: { kind, tag } }) => {
          if (kind === "throw") throw new Error("boom " + tag);
          if (kind === "bytes") {
            process.stdout.write(Buffer.from("buf "));
            process.stdout.write("6869", "hex");
            await new Promise((written) => process.stdout.write(" " + tag + "\\n", written));
            process.stdout.write(Buffer.from("open " + tag));
            return "ok";
          }
          console.log("in " + tag);
          await new Promise((done) => jobs.push(["worker " + tag, done]));
          console.log("done " + tag);
          return "ok";
        };
      `,
    };
    const marked = markedRuntime(nodeRuntime.start, WORKER);
    const { call } = marked;

    it("marks output of a timer started at load time as no call's, even while a call waits for it", () =>
      checkLoadTimeWorker(marked, "w"));

    it("marks Buffers and encoded strings, keeps write's callback, and ends a Buffer's open line", async () => {
      const rt = marked.rt();
      const out = rt.stdout().length;
      expect((await call("bytes", "call-b", "b")).text).to.equal("ok");
      expect((await call("work", "call-c", "c")).text).to.equal("ok");
      await eventually(() => rt.stdout().includes("done c\n"));
      expect(tagLines(rt.stdout().slice(out))).to.deep.equal([
        { id: "call-b", line: "buf hi b" },
        { id: "call-b", line: "open b" },
        { id: "call-c", line: "in c" },
        { id: "", line: "worker c" },
        { id: "call-c", line: "done c" },
      ]);
    });

    it("tags the runtime's log of a call's error with the call's id, and marks no call without a usable id", async () => {
      const rt = marked.rt();
      expect((await call("throw", "call-t", "t")).status).to.equal(500);
      await eventually(() => rt.stderr().includes("Error: boom t"));
      const logged = tagLines(rt.stderr()).find((l) => l.line.includes("request call-t"));
      expect(logged).to.deep.equal({
        id: "call-t",
        line: "[fizz] function error (request call-t): Error: boom t",
      });
      const odd = "bad id with spaces";
      expect((await call("throw", odd, "u")).status).to.equal(500);
      await eventually(() => rt.stderr().includes("Error: boom u"));
      // The whole stream: the id a line gets depends on every marker before it.
      const unmarked = tagLines(rt.stderr()).find((l) => l.line.includes(`request ${odd}`));
      expect(unmarked).to.deep.equal({
        id: "",
        line: `[fizz] function error (request ${odd}): Error: boom u`,
      });
    });
  });

  describe("Fission's callback style", () => {
    const CALLBACK = {
      filename: "callback.js",
      source: `module.exports = function (context, callback) {
  const kind = context.query.kind;
  if (kind === "late") return void setTimeout(() => callback(201, "later", { "x-style": "cb" }), 20);
  if (kind === "value") return Promise.resolve({ status: 202, body: "returned" });
  if (kind === "throw") throw new Error("callback boom");
  callback(200, { hello: "world" });
};
`,
    };
    let rt: Runtime;
    before(async () => {
      rt = await nodeRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
      const res = await push(rt, CALLBACK);
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());
    const call = (kind: string) => request(rt.url, { path: `/?kind=${kind}`, headers: ME });

    it("answers with callback(status, body, headers), called at once or later", async () => {
      const now = await call("now");
      expect(now.status).to.equal(200);
      expect(now.object()).to.deep.equal({ hello: "world" });
      const late = await call("late");
      expect(late.status).to.equal(201);
      expect(late.text).to.equal("later");
      expect(late.headers["x-style"]).to.equal("cb");
    });

    it("takes a value the function resolves to instead, and a throw as FUNCTION_ERROR", async () => {
      const value = await call("value");
      expect(value.status).to.equal(202);
      expect(value.text).to.equal("returned");
      const thrown = await call("throw");
      expect(thrown.error()).to.include({ code: "FUNCTION_ERROR", message: "callback boom" });
    });
  });
});
