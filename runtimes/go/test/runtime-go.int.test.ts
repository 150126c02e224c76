// Integration tests of the Go runtime: the shared runtime contract (runtimes/contract) with Go's
// fixtures compiled by build.sh, then what only Go does: the exec handoff, build.sh's handler
// scanning, dependencies from the module proxy, compile errors and panics named by file and line.
// Real processes, real HTTP; the warm binary and tools come from runtimes/go/prepare.mjs.
import { expect } from "chai";
import { spawnSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http from "node:http";
import { packageArchive } from "../../contract/archive.js";
import {
  type Runtime,
  eventually,
  postJson,
  request,
  sleep,
  specializeArchive,
  specializeBody,
} from "../../contract/harness.js";
import { ME, describeRuntimeContract } from "../../contract/runtime-contract.js";
import { GO_BUILD, HELLO, KINDS, build, compile, ensurePrepared, goRuntime } from "./fixtures.js";

// The first prepare on a machine compiles the build-cache seed (minutes): done here, with room,
// rather than in the first test. Its failure is not thrown here, where it would stop every file
// of a combined run: each Go test fails with the reason instead (start and compile rethrow it).
before(async function () {
  this.timeout(900_000);
  await ensurePrepared().catch(() => undefined);
});

describeRuntimeContract(goRuntime);

const go = (...lines: string[]) => `${lines.join("\n")}\n`;

async function deployed(rt: Runtime, files: Record<string, string>, entrypoint?: string) {
  const archive = await packageArchive(await compile(files));
  return specializeArchive(rt, archive, entrypoint === undefined ? {} : { entrypoint });
}

describe("go runtime: Go only", function () {
  this.timeout(180_000);
  let rt: Runtime | undefined;
  afterEach(async () => {
    await rt?.kill();
    rt = undefined;
  });

  describe("the exec handoff", () => {
    it("keeps serving on the same port and pid, the function's binary now running in it", async () => {
      rt = await goRuntime.start({ FIZZ_INSTANCE_ID: "inst-1" });
      const pid = rt.proc.pid;
      const res = await deployed(rt, { "hello.go": HELLO.source });
      expect(res.status, res.text).to.equal(200);
      expect(res.headers.connection).to.equal("close");
      expect(readlinkSync(`/proc/${pid}/exe`)).to.match(/\/fn\/fizz-function$/);
      expect((await request(rt.url, { headers: ME })).text).to.equal("Hello, world!\n");
      expect(rt.stderr()).to.match(
        /specialized default\/hello@3 \(entrypoint Handler\) in [\d.]+ms/,
      );
    });

    it("closes the keep-alive connections it held, and the next request on a new one is served", async () => {
      rt = await goRuntime.start();
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const before = await request(rt.url, { path: "/healthz", agent });
        expect(before.status).to.equal(200);
        expect((await deployed(rt, { "hello.go": HELLO.source })).status).to.equal(200);
        await sleep(50); // the idle socket's close reaches the agent
        const after = await request(rt.url, { headers: ME, agent });
        expect(after.text).to.equal("Hello, world!\n");
        expect(after.localPort).to.not.equal(before.localPort);
      } finally {
        agent.destroy();
      }
    });

    it("answers 500 FUNCTION_LOAD_FAILED when the package has no binary, or one that does not run", async () => {
      for (const files of [
        { "hello.go": HELLO.source },
        { "fizz-function": "#!/nonexistent/interpreter\n" },
        { "fizz-function": "not an executable at all" },
      ]) {
        rt = await goRuntime.start();
        const res = await specializeArchive(rt, await packageArchive(files));
        expect(res.status, res.text).to.equal(500);
        expect(res.error().code).to.equal("FUNCTION_LOAD_FAILED");
        expect(res.error().message).to.match(/^fizz-function: /);
        expect((await request(rt.url, { path: "/healthz" })).object().state).to.equal("failed");
        expect((await request(rt.url, { headers: ME })).status).to.equal(503);
        await rt.kill();
        rt = undefined;
      }
    });

    it("answers FUNCTION_LOAD_FAILED when the function's process exits during initialization", async () => {
      rt = await goRuntime.start();
      const source = go(
        "package main",
        "",
        "import (",
        '\t"net/http"',
        '\t"os"',
        ")",
        "",
        "func init() { os.Exit(3) }",
        "",
        "func Handler(w http.ResponseWriter, r *http.Request) {}",
      );
      const res = await deployed(rt, { "exit.go": source });
      expect(res.status).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_LOAD_FAILED");
      expect(res.error().message).to.match(/exited during initialization/);
    });

    it("answers FUNCTION_LOAD_FAILED, not silence, when an init of the function's own subpackage panics", async () => {
      rt = await goRuntime.start();
      const files = {
        "main.go": go(
          "package main",
          "",
          "import (",
          '\t"net/http"',
          "",
          '\t"fizzfn/lib"',
          ")",
          "",
          "func Handler(w http.ResponseWriter, r *http.Request) { w.Write([]byte(lib.Name)) }",
        ),
        "lib/lib.go": go(
          "package lib",
          "",
          'var Name = "lib"',
          "",
          "func init() {",
          '\tpanic("boom in a subpackage")',
          "}",
        ),
      };
      const res = await deployed(rt, files);
      expect(res.status, res.text).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_LOAD_FAILED");
      // Imported packages initialize before the runtime's crash report is set up (0fizz_boot.go):
      // the answer says so, and the instance's log has the panic's file and line.
      expect(res.error().message).to.match(/exited during initialization/);
      expect(rt.stderr()).to.match(/panic: boom in a subpackage[\s\S]*fizzfn\/lib\/lib\.go:6/);
    });

    it("leaves the specialize token out of the function's process, /proc/self/environ included", async () => {
      const token = "go-handoff-token-0123456789abcdef";
      rt = await goRuntime.start({ FIZZ_SPECIALIZE_TOKEN: token });
      const source = go(
        "package main",
        "",
        "import (",
        '\t"net/http"',
        '\t"os"',
        ")",
        "",
        "func Handler(w http.ResponseWriter, r *http.Request) {",
        '\tdata, _ := os.ReadFile("/proc/self/environ")',
        "\tw.Write(data)",
        "}",
      );
      const archive = await packageArchive(await compile({ "environ.go": source }));
      const headers = { "x-fizz-specialize-token": token };
      expect((await specializeArchive(rt, archive, { headers })).status).to.equal(200);
      const environ = (await request(rt.url, { headers: ME })).text;
      expect(environ).to.include("FIZZ_SECRETS_DIR=");
      expect(environ).to.not.include(token);
      expect(environ).to.not.include("FIZZ_SPECIALIZE_TOKEN");
      // The token still guards the function's process: 401 without it, 409 with it.
      expect((await specializeArchive(rt, archive)).status).to.equal(401);
      expect((await specializeArchive(rt, archive, { headers })).status).to.equal(409);
    });

    it("refuses Go source in the JSON form with FUNCTION_LOAD_FAILED pointing at the builder", async () => {
      rt = await goRuntime.start();
      const res = await postJson(
        rt.url,
        "/v2/specialize",
        specializeBody("hello.go", HELLO.source),
      );
      expect(res.status).to.equal(500);
      expect(res.error().code).to.equal("FUNCTION_LOAD_FAILED");
      expect(res.error().message).to.match(/^hello\.go: Go functions are compiled by the builder/);
    });

    it("cancels the request's context when the client goes away", async () => {
      rt = await goRuntime.start();
      const source = go(
        "package main",
        "",
        "import (",
        '\t"fmt"',
        '\t"net/http"',
        ")",
        "",
        "func Handler(w http.ResponseWriter, r *http.Request) {",
        "\t<-r.Context().Done()",
        '\tfmt.Println("cancelled:", r.Context().Err())',
        "}",
      );
      expect((await deployed(rt, { "wait.go": source })).status).to.equal(200);
      const req = http.request(`${rt.url}/`, { headers: ME, agent: false });
      req.on("error", () => undefined);
      req.end();
      await sleep(200);
      req.destroy();
      const current = rt;
      await eventually(() => current.stdout().includes("cancelled: context canceled"));
    });
  });

  describe("build.sh", () => {
    it("builds Fission's module example, fetching its dependency through the module proxy", async () => {
      rt = await goRuntime.start();
      const files = {
        "go.mod": go(
          "module github.com/fission/environments/go/examples/module-example",
          "",
          "go 1.25",
          "",
          "require golang.org/x/example v0.0.0-20210811190340-787a929d5a0d",
        ),
        "go.sum": go(
          "golang.org/x/example v0.0.0-20210811190340-787a929d5a0d h1:VYLNvPLNayyBk9XOnsTk5jh7vZarEfiJe7/S15vri2g=",
          "golang.org/x/example v0.0.0-20210811190340-787a929d5a0d/go.mod h1:+yakPl5KR9J+ysfUNADYwEU5qeqjUO473wDktD4xMYw=",
        ),
        "main.go": go(
          "package main",
          "",
          "import (",
          '\t"net/http"',
          "",
          '\t"golang.org/x/example/stringutil"',
          ")",
          "",
          "func Handler(w http.ResponseWriter, r *http.Request) {",
          '\tw.Write([]byte(stringutil.Reverse(stringutil.Reverse("Vendor Example Test"))))',
          "}",
        ),
      };
      expect((await deployed(rt, files)).status).to.equal(200);
      expect((await request(rt.url, { headers: ME })).text).to.equal("Vendor Example Test");
    });

    it("serves any of several handlers of one build, chosen by the entrypoint", async () => {
      const files = {
        "a.go": go(
          "package main",
          "",
          'import "net/http"',
          "",
          'func A(w http.ResponseWriter, r *http.Request) { w.Write([]byte("a")) }',
        ),
        "b.go": go(
          "package main",
          "",
          'import h "net/http"',
          "",
          'func B(w h.ResponseWriter, r *h.Request) { w.Write([]byte("b")) }',
        ),
      };
      const archive = await packageArchive(await compile(files));
      for (const name of ["A", "B"]) {
        rt = await goRuntime.start();
        expect((await specializeArchive(rt, archive, { entrypoint: name })).status).to.equal(200);
        expect((await request(rt.url, { headers: ME })).text).to.equal(name.toLowerCase());
        await rt.kill();
        rt = undefined;
      }
    });

    it("fails with the compiler's file:line in the build log", async () => {
      const result = await build({
        "hello.go": go(
          "package main",
          "",
          'import "net/http"',
          "",
          "func Handler(w http.ResponseWriter, r *http.Request) {",
          "\tundefinedThing()",
          "}",
        ),
      });
      expect(result.ok).to.equal(false);
      expect(result.log).to.match(/hello\.go:6:\d+: undefined: undefinedThing/);
    });

    it("reads the shared seed cache but never writes to it, and is not writable by builds", async () => {
      const seed = join(GO_BUILD, "gocache-seed");
      const snapshot = () => {
        const seen: string[] = [];
        const walk = (dir: string) => {
          for (const name of readdirSync(dir)) {
            const path = join(dir, name);
            const st = statSync(path);
            expect(st.mode & 0o022, `${path} is writable by others`).to.equal(0);
            if (st.isDirectory()) walk(path);
            else seen.push(`${path} ${st.size} ${st.mtimeMs}`);
          }
        };
        walk(seed);
        return seen.sort();
      };
      const before = snapshot();
      const result = await build(
        {
          "fresh.go": go(
            "package main",
            "",
            'import "net/http"',
            "",
            `func Handler(w http.ResponseWriter, r *http.Request) { w.Write([]byte("${Date.now()}")) }`,
          ),
        },
        { cache: false },
      );
      expect(result.ok, result.log).to.equal(true);
      expect(snapshot()).to.deep.equal(before);
    });

    it("refuses func main, reserved names and another package, naming file and line", async () => {
      const main = await build({ "hello.go": go("package main", "", "func main() {}") });
      expect(main.ok).to.equal(false);
      expect(main.log).to.match(/hello\.go:3: func main: the runtime provides main/);
      const reserved = await build({ "fizz_x.go": go("package main") });
      expect(reserved.log).to.match(/fizz_x\.go: file names starting with fizz_ are reserved/);
      const other = await build({ "hello.go": go("package hello") });
      expect(other.log).to.match(/hello\.go:1: package hello: a Go function is package main/);
    });
  });

  describe("build.sh against hostile packages", () => {
    it("refuses a name with a newline, copying nothing from outside the package", async () => {
      // Read line by line, "./a<LF>/etc/passwd" was two names, the second one the host's.
      const result = await build(
        { "hello.go": HELLO.source, "a\n/etc/passwd": "not the host's" },
        { cache: false },
      );
      expect(result.ok).to.equal(false);
      expect(result.log).to.match(/name\(s\) in the package contain control characters/);
      expect(Object.keys(result.files)).to.deep.equal([]);
    });

    it("copies data files with spaces and dashes in their names beside the binary", async () => {
      const result = await build({
        "hello.go": HELLO.source,
        "data dir/-x.txt": "dash",
        "templates/a b.html": "<p>",
      });
      expect(result.ok, result.log).to.equal(true);
      expect(Object.keys(result.files).sort()).to.deep.equal([
        "data dir/-x.txt",
        "fizz-function",
        "fizz-function.entries",
        "templates/a b.html",
      ]);
    });

    for (const name of ["fizz-function", "fizz-function.entries"]) {
      it(`refuses a package file named ${name}, which would replace the build's output`, async () => {
        const result = await build({ "hello.go": HELLO.source, [name]: "#!/bin/sh\necho pwned\n" });
        expect(result.ok).to.equal(false);
        expect(result.log).to.include(`${name}: this name is reserved for the build's output`);
      });
    }

    it("gives two processes building the same package at once one finished result each", async () => {
      const files = { "hello.go": `${HELLO.source}\n// ${Date.now()}\n` };
      const [a, b] = await Promise.all([build(files), build(files)]);
      expect(a.ok, a.log).to.equal(true);
      expect(b.ok, b.log).to.equal(true);
      expect(Object.keys(a.files).sort()).to.deep.equal(Object.keys(b.files).sort());
    });
  });

  describe("prepare.mjs", () => {
    it("lets one of two waiters take over a lock left by a dead process, one holder at a time", () => {
      const dir = mkdtempSync(join(tmpdir(), "fizz-go-lock-"));
      try {
        const lock = join(dir, "lock");
        mkdirSync(lock);
        writeFileSync(join(lock, "pid"), `${spawnSync("true").pid} stale`);
        // Each holder appends "in" then, 300 ms later, "out": interleaved lines mean two holders.
        const script = `import { appendFileSync } from "node:fs";
          import { withLock } from ${JSON.stringify(join(GO_BUILD, "..", "prepare.mjs"))};
          const log = ${JSON.stringify(join(dir, "log"))};
          await withLock(async () => {
            appendFileSync(log, "in\\n");
            await new Promise((r) => setTimeout(r, 300));
            appendFileSync(log, "out\\n");
          }, ${JSON.stringify(lock)});`;
        const node = `${JSON.stringify(process.execPath)} --input-type=module -e '${script}'`;
        const res = spawnSync("sh", ["-c", `${node} & ${node} & ${node} & wait`], {
          encoding: "utf8",
          timeout: 60_000,
        });
        expect(res.stderr).to.equal("");
        expect(readFileSync(join(dir, "log"), "utf8")).to.equal("in\nout\n".repeat(3));
        expect(readdirSync(dir).sort()).to.deep.equal(["log"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe("a handler that panics", () => {
    it("answers 500 FUNCTION_ERROR naming the user's file and line, and keeps serving", async () => {
      rt = await goRuntime.start();
      expect((await deployed(rt, { [KINDS.filename]: KINDS.source })).status).to.equal(200);
      const line =
        KINDS.source.split("\n").findIndex((l) => l.includes("boom from the function")) + 1;
      const res = await request(rt.url, { path: "/?kind=throw", headers: ME });
      expect(res.status).to.equal(500);
      expect(res.error().message).to.equal(`kinds.go:${line}: panic: boom from the function`);
      // The trace reaches stderr around the answer, not necessarily before the client reads it.
      const current = rt;
      await eventually(() => current.stderr().includes("goroutine"));
      expect((await request(rt.url, { headers: ME })).text).to.equal("plain");
    });
  });
});
