// Integration tests of the Python runtime (runtimes/python/server.py, run with `python3` from PATH):
// the shared runtime contract (runtimes/contract) with Python's fixtures, then what only Python
// does. A real process, real HTTP.
import { expect } from "chai";
import http from "node:http";
import { packageArchive } from "../../contract/archive.js";
import { type Runtime, eventually, request, specializeArchive } from "../../contract/harness.js";
import {
  ME,
  checkLoadTimeWorker,
  describeRuntimeContract,
  markedRuntime,
  push,
  tagLines,
} from "../../contract/runtime-contract.js";
import { HELLO, KINDS, pythonRuntime } from "./fixtures.js";

describeRuntimeContract(pythonRuntime);

describe("python runtime: Python only", function () {
  this.timeout(20_000);

  describe("with Fission's hello world", () => {
    let rt: Runtime;
    before(async () => {
      rt = await pythonRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
      expect((await push(rt, HELLO)).status).to.equal(200);
    });
    after(() => rt.kill());

    it("answers with what main printed, which also reaches the log", async () => {
      expect((await request(rt.url, { path: "/", headers: ME })).text).to.equal("Hello, world!\n");
      await eventually(() => rt.stdout().includes("Hello, world!\n"));
    });

    it("closes the connection after refusing a request whose body it did not read", async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const first = await request(rt.url, { headers: ME, agent });
        // 421 without reading the body: the runtime must close rather than misread the body.
        const refused = await request(rt.url, {
          method: "POST",
          headers: { "x-fizz-instance": "x" },
          body: "GET / HTTP/1.1\r\n\r\n",
          agent,
        });
        expect(refused.status).to.equal(421);
        expect(refused.localPort).to.equal(first.localPort);
        expect(refused.headers.connection).to.equal("close");
        expect((await request(rt.url, { headers: ME, agent })).text).to.equal("Hello, world!\n");
      } finally {
        agent.destroy();
      }
    });
  });

  describe("a package with dependencies installed by pip install --target", () => {
    let rt: Runtime | undefined;
    afterEach(() => rt?.kill());
    // What `pip install --target <package dir>` leaves: the distribution's packages and its
    // metadata next to the function's own modules.
    const installed = {
      "greeter/__init__.py": "from greeter.core import greet\n",
      "greeter/core.py": "def greet(who):\n    return 'hello, ' + who\n",
      "greeter-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: greeter\nVersion: 1.0\n",
      "greeter-1.0.dist-info/RECORD": "greeter/__init__.py,,\n",
      "six_like.py": "VALUE = 'single module'\n",
    };

    it("imports them from the package directory", async () => {
      rt = await pythonRuntime.start();
      const files = {
        ...installed,
        "requirements.txt": "greeter==1.0\n",
        "main.py": [
          "import importlib.metadata",
          "from greeter import greet",
          "import six_like",
          "",
          "def main():",
          "    version = importlib.metadata.version('greeter')",
          "    return f\"{greet('deps')} {version} {six_like.VALUE}\"",
          "",
        ].join("\n"),
      };
      const res = await specializeArchive(rt, await packageArchive(files));
      expect(res.status, res.text).to.equal(200);
      const answer = await request(rt.url, { headers: ME });
      expect(answer.text).to.equal("hello, deps 1.0 single module");
    });

    it("refuses a module whose name the runtime already uses, naming it", async () => {
      rt = await pythonRuntime.start();
      const files = { "json.py": "def main():\n    return 'shadow'\n" };
      const res = await specializeArchive(rt, await packageArchive(files), {
        entrypoint: "json.main",
      });
      expect(res.status).to.equal(500);
      expect(res.error().message).to.match(/^json\.py: the module name "json" is taken/);
    });
  });

  describe("call markers", () => {
    // A thread started when the module loads runs outside any call: what it prints while a call
    // waits for it is not that call's. logging's handler (made at load time) and asyncio tasks of
    // the call write as the call.
    const WORKER = {
      filename: "worker.py",
      source: [
        "import asyncio, logging, queue, sys, threading",
        "",
        "logging.basicConfig(format='%(levelname)s %(message)s')",
        "jobs = queue.Queue()",
        "",
        "def work():",
        "    while True:",
        "        line, done = jobs.get()",
        "        print(line)",
        "        done.set()",
        "",
        "threading.Thread(target=work, daemon=True).start()",
        "",
        "async def say(line):",
        "    await asyncio.sleep(0)",
        "    print(line)",
        "",
        "async def both(tag):",
        "    await asyncio.gather(say('task1 ' + tag), say('task2 ' + tag))",
        "",
        "def main(context):",
        "    kind, tag = context.query['kind'], context.query['tag']",
        "    if kind == 'throw':",
        "        raise RuntimeError('boom ' + tag)",
        "    if kind == 'log':",
        "        logging.getLogger('fn').warning('logged %s', tag)",
        "        asyncio.run(both(tag))",
        "        return 'ok'",
        "    print('in ' + tag)",
        "    done = threading.Event()",
        "    jobs.put(('worker ' + tag, done))",
        "    done.wait()",
        "    print('done ' + tag)",
        "    return 'ok'",
        "",
      ].join("\n"),
    };
    const marked = markedRuntime(pythonRuntime.start, WORKER);
    const { call } = marked;

    it("marks output of a thread started at load time as no call's, even while a call waits for it", () =>
      checkLoadTimeWorker(marked, "w"));

    it("marks logging's lines and the call's asyncio tasks' output with the call's id", async () => {
      const rt = marked.rt();
      expect((await call("log", "call-l", "l")).text).to.equal("ok");
      await eventually(() => rt.stdout().includes("task2 l\n") && rt.stderr().includes("logged l"));
      const stdout = tagLines(rt.stdout()).filter((l) => l.line.endsWith(" l"));
      expect(stdout).to.have.deep.members([
        { id: "call-l", line: "task1 l" },
        { id: "call-l", line: "task2 l" },
      ]);
      const stderr = tagLines(rt.stderr()).filter((l) => l.line.includes("logged l"));
      expect(stderr).to.deep.equal([{ id: "call-l", line: "WARNING logged l" }]);
    });

    it("tags the runtime's log of a call's error with the call's id, and marks no call without a usable id", async () => {
      const rt = marked.rt();
      expect((await call("throw", "call-t", "t")).status).to.equal(500);
      await eventually(() => rt.stderr().includes("RuntimeError: boom t"));
      const tagged = tagLines(rt.stderr());
      const first = tagged.findIndex((l) => l.line.includes("request call-t"));
      const last = tagged.findIndex((l) => l.line.includes("RuntimeError: boom t"));
      expect(tagged[first]?.line).to.equal("[fizz] function error (request call-t):");
      expect(tagged.slice(first, last + 1).map((l) => l.id)).to.satisfy((ids: string[]) =>
        ids.every((id) => id === "call-t"),
      );
      const odd = "bad id with spaces";
      expect((await call("throw", odd, "u")).status).to.equal(500);
      await eventually(() => rt.stderr().includes("RuntimeError: boom u"));
      // The whole stream: the id a line gets depends on every marker before it.
      const unmarked = tagLines(rt.stderr()).find((l) => l.line.includes(`request ${odd}`));
      expect(unmarked).to.deep.equal({ id: "", line: `[fizz] function error (request ${odd}):` });
    });
  });

  describe("a specialized function", () => {
    let rt: Runtime;
    before(async () => {
      rt = await pythonRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
      const res = await push(rt, KINDS);
      expect(res.status, res.text).to.equal(200);
    });
    after(() => rt.kill());

    it("gives the first value of a repeated query key", async () => {
      const res = await request(rt.url, {
        method: "POST",
        path: "/?kind=echo&tag=a&tag=b",
        headers: { ...ME, "content-type": "application/json" },
        body: "{}",
      });
      expect(res.object().query).to.deep.equal({ kind: "echo", tag: "a" });
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
  });
});
