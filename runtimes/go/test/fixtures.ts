// The Go runtime as the contract suite runs it (runtimes/go/.build/fizz-go-warm, built by
// prepare.mjs), its compile step (runtimes/go/build.sh, results cached by content hash), and the
// user functions (in Go) the contract calls: see runtimes/contract/runtime-under-test.ts.
import { execFile } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Files } from "../../contract/archive.js";
import { cachedBuild, type BuildOutcome } from "../../contract/build-cache.js";
import { startRuntime } from "../../contract/harness.js";
import { prepare } from "../prepare.mjs";
import type { PackageFixtures, RuntimeUnderTest, Source } from "../../contract/runtime-contract.js";

const GO_DIR = fileURLToPath(new URL("..", import.meta.url));
const RUNTIMES = dirname(GO_DIR.replace(/\/$/, ""));
export const GO_BUILD = join(GO_DIR, ".build");
export const WARM_BINARY = join(GO_BUILD, "fizz-go-warm");
const CACHE = join(GO_BUILD, "test-cache");

export type BuildResult = BuildOutcome;

/** Runs build.sh as the builder would, on a copy of `files`; results are cached under
 * .build/test-cache by a hash of the files and build.sh's inputs, so reruns are instant. */
export function build(files: Files, { cache = true } = {}): Promise<BuildResult> {
  return cachedBuild({
    cacheDir: CACHE,
    inputs: ["build.sh", ".build/stamp"].map((f) => readFileSync(join(GO_DIR, f))),
    files,
    cache,
    build: ({ src, deploy, home }) =>
      new Promise((resolve) => {
        const env = {
          SRC_PKG: src,
          DEPLOY_PKG: deploy,
          FIZZ_RUNTIMES_DIR: RUNTIMES,
          HOME: home,
          TMPDIR: home,
          PATH: `/usr/local/go/bin:${process.env.PATH ?? "/usr/bin:/bin"}`,
          ...(process.env.GOPROXY ? { GOPROXY: process.env.GOPROXY } : {}),
        };
        execFile(
          "sh",
          [join(GO_DIR, "build.sh")],
          { cwd: src, env, maxBuffer: 16 * 1024 * 1024 },
          (error, stdout, stderr) => resolve({ ok: !error, log: `${stdout}${stderr}` }),
        );
      }),
  });
}

/** The contract's compile hook: a failed build rejects, with the build log. */
export async function compile(files: Files): Promise<Files> {
  const result = await build(files);
  if (!result.ok) throw new Error(`build.sh failed:\n${result.log}`);
  return result.files;
}

const go = (...lines: string[]) => `${lines.join("\n")}\n`;

/** Fission's hello world (go/tests/fixtures/hello.go). */
export const HELLO: Source = {
  filename: "hello.go",
  source: go(
    "package main",
    "",
    'import "net/http"',
    "",
    "// Handler is the entry point for this fission function",
    "func Handler(w http.ResponseWriter, r *http.Request) {",
    '\tmsg := "Hello, world!\\n"',
    "\tw.Write([]byte(msg))",
    "}",
  ),
};

/** The contract's kinds (runtimes/contract/runtime-under-test.ts), written against net/http. */
export const KINDS: Source = {
  filename: "kinds.go",
  source: go(
    "package main",
    "",
    "import (",
    '\t"encoding/json"',
    '\t"errors"',
    '\t"fmt"',
    '\t"io"',
    '\t"net/http"',
    '\t"os"',
    '\t"strconv"',
    '\t"strings"',
    ")",
    "",
    "func answer(w http.ResponseWriter, status int, v any) {",
    '\tw.Header().Set("Content-Type", "application/json")',
    "\tw.WriteHeader(status)",
    "\tjson.NewEncoder(w).Encode(v)",
    "}",
    "",
    "func Handler(w http.ResponseWriter, r *http.Request) {",
    '\tswitch r.URL.Query().Get("kind") {',
    '\tcase "echo":',
    "\t\tvar body any",
    "\t\tif err := json.NewDecoder(r.Body).Decode(&body); err != nil {",
    '\t\t\tanswer(w, 400, map[string]any{"error": map[string]any{"code": "INVALID_BODY", "message": err.Error(), "retryable": false}})',
    "\t\t\treturn",
    "\t\t}",
    "\t\theaders, params := map[string]string{}, map[string]string{}",
    "\t\tfor k, v := range r.Header {",
    "\t\t\theaders[strings.ToLower(k)] = v[0]",
    '\t\t\tif name, ok := strings.CutPrefix(k, "X-Fizz-Params-"); ok {',
    "\t\t\t\tparams[name] = v[0]",
    "\t\t\t}",
    "\t\t}",
    "\t\t// Go canonicalizes header names (userId arrives as Userid): the name as sent is in the raw",
    "\t\t// header, which net/http does not keep, so the fixture takes the name the gateway sends.",
    '\t\tif v, ok := params["Userid"]; ok {',
    '\t\t\tdelete(params, "Userid")',
    '\t\t\tparams["userId"] = v',
    "\t\t}",
    "\t\tquery := map[string]string{}",
    "\t\tfor k, v := range r.URL.Query() {",
    "\t\t\tquery[k] = v[0]",
    "\t\t}",
    '\t\trev, _ := strconv.Atoi(r.Header.Get("X-Fizz-Function-Revision"))',
    "\t\tanswer(w, 200, map[string]any{",
    '\t\t\t"method": r.Method, "path": r.URL.Path, "query": query, "headers": headers,',
    '\t\t\t"body": body, "params": params, "requestId": r.Header.Get("X-Request-Id"),',
    '\t\t\t"function": map[string]any{"namespace": r.Header.Get("X-Fizz-Function-Namespace"),',
    '\t\t\t\t"name": r.Header.Get("X-Fizz-Function-Name"), "revision": rev},',
    "\t\t})",
    '\tcase "text":',
    "\t\tdata, _ := io.ReadAll(r.Body)",
    '\t\tanswer(w, 200, map[string]any{"text": string(data), "length": len(data)})',
    '\tcase "json":',
    '\t\tanswer(w, 200, map[string]any{"hello": []string{"world"}})',
    '\tcase "list":',
    '\t\tanswer(w, 200, []any{1, "two"})',
    '\tcase "created":',
    '\t\tw.Header().Set("X-Custom", "yes")',
    '\t\tanswer(w, 201, map[string]any{"created": true})',
    '\tcase "accepted":',
    '\t\tw.Header().Set("Content-Type", "text/plain; charset=utf-8")',
    "\t\tw.WriteHeader(202)",
    '\t\tw.Write([]byte("accepted"))',
    '\tcase "not-a-response":',
    '\t\tanswer(w, 200, map[string]any{"status": "ok"})',
    '\tcase "bytes":',
    '\t\tw.Header().Set("Content-Type", "application/octet-stream")',
    "\t\tw.Write([]byte{0, 1, 2, 255})",
    '\tcase "env":',
    '\t\tw.Write([]byte(os.Getenv("GREETING")))',
    '\tcase "log":',
    '\t\tfmt.Println("log line from the function")',
    '\t\tw.Write([]byte("logged"))',
    '\tcase "throw":',
    '\t\tpanic(errors.New("boom from the function"))',
    '\tcase "unsendable":',
    "\t\tw.WriteHeader(1000) // net/http refuses a status it cannot send",
    "\tdefault:",
    '\t\tw.Header().Set("Content-Type", "text/plain; charset=utf-8")',
    '\t\tw.Write([]byte("plain"))',
    "\t}",
    "}",
  ),
};

/** The contract's configReader. */
const CONFIG_READER: Source = {
  filename: "main.go",
  source: go(
    "package main",
    "",
    "import (",
    '\t"net/http"',
    '\t"os"',
    '\t"path/filepath"',
    ")",
    "",
    "func Handler(w http.ResponseWriter, r *http.Request) {",
    "\tq := r.URL.Query()",
    '\tswitch q.Get("kind") {',
    '\tcase "file":',
    '\t\tdata, err := os.ReadFile(filepath.Join(os.Getenv(q.Get("dir")), q.Get("path")))',
    "\t\tif err != nil {",
    "\t\t\tpanic(err)",
    "\t\t}",
    "\t\tw.Write(data)",
    '\tcase "env":',
    '\t\tv, ok := os.LookupEnv(q.Get("name"))',
    "\t\tif !ok {",
    '\t\t\tv = "unset"',
    "\t\t}",
    "\t\tw.Write([]byte(v))",
    '\tcase "relative":',
    '\t\tdata, err := os.ReadFile(q.Get("path"))',
    "\t\tif err != nil {",
    "\t\t\tpanic(err)",
    "\t\t}",
    "\t\tw.Write(data)",
    "\tdefault:",
    '\t\tw.Write([]byte("unknown kind"))',
    "\t}",
    "}",
  ),
};

const text = (name: string, body: string) =>
  go(
    "package main",
    "",
    'import "net/http"',
    "",
    `func ${name}(w http.ResponseWriter, r *http.Request) {`,
    `\tw.Write([]byte(${body}))`,
    "}",
  );

export const PACKAGES: PackageFixtures = {
  main: "main.go",
  shapes: [
    {
      what: "Handler calling a function of another file of package main, without an entrypoint",
      files: {
        "main.go": text("Handler", "word()"),
        "helper.go": go("package main", "", 'func word() string { return "sibling" }'),
      },
      answer: "sibling",
    },
    {
      what: "a handler chosen by name among several",
      files: {
        "main.go": text("Handler", '"main"'),
        "api.go": text("Get", 'shout("nested")'),
        "util.go": go(
          "package main",
          "",
          'import "strings"',
          "",
          "func shout(s string) string { return strings.ToUpper(s) }",
        ),
      },
      entrypoint: "Get",
      answer: "NESTED",
    },
    {
      what: "file.Fn naming the handler's file",
      files: { "main.go": text("Handler", '"main"'), "api.go": text("Get", '"file-fn"') },
      entrypoint: "api.Get",
      answer: "file-fn",
    },
    {
      what: "a package of its own (a go.mod and a local package imported by path)",
      files: {
        "go.mod": "module example.com/shop\n\ngo 1.22\n",
        "main.go": go(
          "package main",
          "",
          "import (",
          '\t"net/http"',
          "",
          '\t"example.com/shop/lib"',
          ")",
          "",
          "func Handler(w http.ResponseWriter, r *http.Request) {",
          "\tw.Write([]byte(lib.Name()))",
          "}",
        ),
        "lib/lib.go": go("package lib", "", 'func Name() string { return "module" }'),
      },
      answer: "module",
    },
  ],
  loadFailure: {
    files: {
      "main.go": text("Handler", "settings"),
      "helper.go": go(
        "package main",
        "",
        'import "errors"',
        "",
        "var settings = load()",
        "",
        "func load() string {",
        '\tpanic(errors.New("boom in helper"))',
        "}",
      ),
    },
    message: /^helper\.go:8: panic: boom in helper$/,
  },
  configReader: CONFIG_READER,
};

/** The contract's twice printer: Go does not opt in to the call-marker suite (README, Logs), so
 * this is the abandoned-call check's way to see whether a call's function runs on. */
const TWICE_PRINTER: Source = {
  filename: "twice.go",
  source: go(
    "package main",
    "",
    "import (",
    '\t"fmt"',
    '\t"net/http"',
    '\t"strconv"',
    '\t"time"',
    ")",
    "",
    "func Handler(w http.ResponseWriter, r *http.Request) {",
    "\tq := r.URL.Query()",
    '\tif q.Get("kind") == "twice" {',
    '\t\tms, _ := strconv.Atoi(q.Get("ms"))',
    '\t\tfmt.Println("one " + q.Get("tag"))',
    "\t\ttime.Sleep(time.Duration(ms) * time.Millisecond)",
    '\t\tfmt.Println("two " + q.Get("tag"))',
    "\t}",
    '\tw.Write([]byte("twice"))',
    "}",
  ),
};

export const SERVER = { name: "go", command: WARM_BINARY, script: "--warm" };

/** A function whose initialization crashed leaves its watchdog serving the instance as failed
 * (the poolkeeper stops it; here the test does): the watchdogs listening on this port. */
function killWatchdogs(port: string): void {
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (cmdline !== `${WARM_BINARY}\0--fizz-watchdog\0`) continue;
      const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
      if (environ.includes(`PORT=${port}`)) process.kill(Number(pid), "SIGKILL");
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
}

let prepared: Promise<void> | undefined;
/** prepare.mjs once per test process (instant when .build/ is current; npm test's set-up and
 * `npm start` run it first). A machine without Go fails the Go tests with the reason. */
export function ensurePrepared(): Promise<void> {
  prepared ??= (async () => {
    const result = (await prepare({ log: () => undefined })) as { ok: boolean; reason?: string };
    if (!result.ok) throw new Error(`go runtime unavailable: ${result.reason ?? "unknown"}`);
  })();
  return prepared;
}

export const goRuntime: RuntimeUnderTest = {
  name: "go",
  start: async (env, options) => {
    await ensurePrepared();
    const rt = await startRuntime(SERVER, env, options);
    const kill = rt.kill.bind(rt);
    rt.kill = async () => {
      await kill();
      killWatchdogs(new URL(rt.url).port);
    };
    return rt;
  },
  compile: async (files) => {
    await ensurePrepared();
    return compile(files);
  },
  twicePrinter: TWICE_PRINTER,
  fixtures: {
    hello: HELLO,
    foreignFilename: "hello.py",
    loadFailures: [
      {
        what: "an entrypoint that names no function",
        ...HELLO,
        entrypoint: "Missing",
        message:
          /^entrypoint "Missing": no func Missing\(http\.ResponseWriter, \*http\.Request\) in package main \(handlers: Handler\)$/,
      },
      {
        what: "a panic in an init function",
        filename: "hello.go",
        source: go(
          "package main",
          "",
          'import "net/http"',
          "",
          "func init() {",
          '\tpanic("boom at init")',
          "}",
          "",
          "func Handler(w http.ResponseWriter, r *http.Request) {}",
        ),
        message: /^hello\.go:6: panic: boom at init$/,
      },
      {
        what: "an entrypoint that names a function of another signature",
        filename: "hello.go",
        source: go(
          "package main",
          "",
          'import "net/http"',
          "",
          "func Handler(w http.ResponseWriter, r *http.Request) {}",
          "",
          "func Other(w http.ResponseWriter) {}",
        ),
        entrypoint: "Other",
        message: /^hello\.go:7: Other is not a func\(http\.ResponseWriter, \*http\.Request\)$/,
      },
    ],
    handlerShapes: [
      {
        what: "Fission's func Handler(w http.ResponseWriter, r *http.Request)",
        ...HELLO,
        answer: "Hello, world!\n",
      },
      {
        what: "a handler named by the entrypoint",
        filename: "hello.go",
        source: text("Named", '"named"'),
        entrypoint: "Named",
        answer: "named",
      },
      {
        what: "file.Fn",
        filename: "hello.go",
        source: text("Handler", '"file-fn"'),
        entrypoint: "hello.Handler",
        answer: "file-fn",
      },
      {
        what: "Fission's http.HandlerFunc and http.Handler variables",
        filename: "hello.go",
        source: go(
          "package main",
          "",
          'import "net/http"',
          "",
          "var Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {",
          "\tMux.ServeHTTP(w, r)",
          "})",
          "",
          "var Mux http.Handler",
          "",
          "func init() {",
          "\tmux := http.NewServeMux()",
          '\tmux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("handler-var")) })',
          "\tMux = mux",
          "}",
        ),
        answer: "handler-var",
      },
      {
        what: "Fission's func(ctx context.Context, w, r) form",
        filename: "hello.go",
        source: go(
          "package main",
          "",
          "import (",
          '\t"context"',
          '\tnethttp "net/http"',
          ")",
          "",
          "func Handler(ctx context.Context, w nethttp.ResponseWriter, r *nethttp.Request) {",
          "\tif ctx.Err() == nil {",
          '\t\tw.Write([]byte("with-context"))',
          "\t}",
          "}",
        ),
        answer: "with-context",
      },
    ],
    kinds: KINDS,
    slow: (ms, answer) => ({
      filename: "slow.go",
      source: go(
        "package main",
        "",
        "import (",
        '\t"net/http"',
        '\t"time"',
        ")",
        "",
        "func Handler(w http.ResponseWriter, r *http.Request) {",
        `\ttime.Sleep(${ms} * time.Millisecond)`,
        `\tw.Write([]byte(${JSON.stringify(answer)}))`,
        "}",
      ),
    }),
    tokenLeak: {
      filename: "leak.go",
      source: go(
        "package main",
        "",
        "import (",
        '\t"net/http"',
        '\t"os"',
        '\t"strings"',
        ")",
        "",
        "func Handler(w http.ResponseWriter, r *http.Request) {",
        '\tv, ok := os.LookupEnv("FIZZ_SPECIALIZE_TOKEN")',
        "\tfor _, kv := range os.Environ() {",
        '\t\tif strings.HasPrefix(kv, "FIZZ_SPECIALIZE_TOKEN=") || strings.HasPrefix(kv, "FIZZ_GO_HANDOFF=") {',
        "\t\t\tv, ok = kv, true",
        "\t\t}",
        "\t}",
        "\tif !ok {",
        '\t\tv = "absent"',
        "\t}",
        "\tw.Write([]byte(v))",
        "}",
      ),
    },
    packages: PACKAGES,
  },
};
