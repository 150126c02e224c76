// The Python runtime's cold-start rehearsal (fizz_rehearsal.py) and its connection threads
// (fizz_workers.py): a pool instance does once, before it announces readiness, what its first
// specialize and call would otherwise do for the first time, and leaves the function nothing of it.
// A real process on fd 3 as the process backend starts it, real HTTP.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { expect } from "chai";
import {
  freePort,
  minimalEnv,
  postJson,
  request,
  sleep,
  specializeBody,
} from "../../contract/harness.js";

const SERVER = fileURLToPath(new URL("../server.py", import.meta.url));
const ME = { "x-fizz-instance": "inst-1" };

/** What the function finds of the rehearsal: modules, variables, files, threads. */
const PROBE = [
  "import json, os, sys, threading, time",
  "",
  "def main(context):",
  "    if context.query.get('sleep'):",
  "        time.sleep(float(context.query['sleep']))",
  "    return {",
  "        'modules': sorted(m for m in sys.modules if 'rehearsal_' in m or m == 'fizz_flask'),",
  "        'env': sorted(k for k in os.environ if 'REHEARSAL' in k),",
  "        'files': sorted(os.listdir(os.environ['FIZZ_WORKDIR'])),",
  "        'threads': threading.active_count(),",
  "        'thread': threading.current_thread().name,",
  "    }",
  "",
].join("\n");

interface Seen {
  modules: string[];
  env: string[];
  files: string[];
  threads: number;
  thread: string;
}

describe("python runtime: a pool instance rehearses a cold start before it is ready", function () {
  this.timeout(30_000);
  let proc: ChildProcess | undefined;
  let scratch: string;

  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), "fizz-python-rehearsal-"));
  });
  afterEach(() => {
    proc?.kill("SIGKILL");
    rmSync(scratch, { recursive: true, force: true });
  });

  /** Starts the runtime and returns once it announced readiness on fd 3. */
  async function ready(
    extra: Record<string, string> = {},
  ): Promise<{ url: string; err: () => string }> {
    const port = await freePort();
    proc = spawn("python3", [SERVER], {
      env: {
        ...minimalEnv(scratch),
        PORT: String(port),
        HOST: "127.0.0.1",
        FIZZ_INSTANCE_ID: "inst-1",
        FIZZ_WORKDIR: scratch,
        FIZZ_READY_FD: "3",
        ...extra,
      },
      stdio: ["ignore", "ignore", "pipe", "pipe"],
    });
    let err = "";
    proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
    const pipe = proc.stdio[3] as Readable;
    await new Promise<void>((resolve, reject) => {
      pipe.once("data", () => resolve());
      pipe.once("end", () => reject(new Error(`the pipe closed unwritten: ${err}`)));
    });
    return { url: `http://127.0.0.1:${port}`, err: () => err };
  }

  async function call(url: string, query = ""): Promise<Seen> {
    const res = await request(url, { path: `/${query}`, headers: ME });
    expect(res.status, res.text).to.equal(200);
    return JSON.parse(res.text) as Seen;
  }

  it("is over before the announcement and leaves the function no module, variable or file of it", async () => {
    const { url, err } = await ready();
    const loaded = await postJson(url, "/v2/specialize", specializeBody("probe.py", PROBE));
    expect(loaded.status, loaded.text).to.equal(200);
    const seen = await call(url);
    // fizz_flask was imported by the rehearsal (a main(context) never imports it itself); its
    // throwaway function is no module, and its specialize body left no variable or file.
    expect(seen.modules).to.deep.equal(["fizz_flask"]);
    expect(seen.env).to.deep.equal([]);
    expect(seen.files).to.deep.equal(["probe.py"]);
    expect(err()).not.to.contain("rehearsal step");
  });

  it("is skipped by an instance a specialize already waits for (FIZZ_WARM_UP=0)", async () => {
    const { url } = await ready({ FIZZ_WARM_UP: "0" });
    const loaded = await postJson(url, "/v2/specialize", specializeBody("probe.py", PROBE));
    expect(loaded.status, loaded.text).to.equal(200);
    expect((await call(url)).modules).to.deep.equal([]);
  });

  it("serves calls on connection threads started before the instance was ready", async () => {
    const { url } = await ready();
    await postJson(url, "/v2/specialize", specializeBody("probe.py", PROBE));
    expect((await call(url)).thread).to.equal("fizz-connection");
  });

  it("a burst of connections leaves at most four idle threads behind, not one per connection", async () => {
    const { url } = await ready();
    await postJson(url, "/v2/specialize", specializeBody("probe.py", PROBE));
    const before = (await call(url)).threads;
    // Ten calls at once, each on its own connection (no agent), each holding its thread for 1 s.
    const burst = await Promise.all(Array.from({ length: 10 }, () => call(url, "?sleep=1")));
    expect(Math.max(...burst.map((s) => s.threads))).to.be.at.least(before + 6);
    // Once the burst's threads are back to waiting or have ended: the main thread, at most four
    // idle (MAX_IDLE) and the one serving this call; one thread per connection would leave ten.
    let after = Infinity;
    for (let i = 0; i < 50 && after > before + 4; i++) {
      await sleep(100);
      after = (await call(url)).threads;
    }
    expect(after).to.be.at.most(before + 4);
  });
});

// What ThreadingMixIn did when a thread could not be started (RuntimeError from Thread.start: a
// pids or memory limit): the server logs it and closes that connection, and nothing else changes.
// The connection must not stay queued for a later thread, and the count of idle threads must not
// count one that was never started: either would leave a later connection waiting with no thread.
const REFUSED_START = [
  "import json, sys, threading, time",
  "sys.path.insert(0, sys.argv[1])",
  "import fizz_workers",
  "served, hold = [], threading.Event()",
  "def serve(request, _address):",
  "    served.append(request)",
  "    if request == 'held':",
  "        hold.wait(10)",
  "workers = fizz_workers.Workers(serve)",
  "real_start = threading.Thread.start",
  "def refuse(self):",
  "    threading.Thread.start = real_start",
  '    raise RuntimeError("can\'t start new thread")',
  "threading.Thread.start = refuse",
  "try:",
  "    workers.submit('refused', None)",
  "except RuntimeError:",
  "    pass  # the server's handle_error, then shutdown_request closes it",
  "for name in ('first', 'held', 'next'):",
  "    workers.submit(name, None)",
  "    time.sleep(0.2)",
  "deadline = time.monotonic() + 5",
  "while 'next' not in served and time.monotonic() < deadline:",
  "    time.sleep(0.05)",
  "print(json.dumps(served))",
  "hold.set()",
].join("\n");

describe("python runtime: connection threads when one cannot be started", function () {
  this.timeout(30_000);

  it("drops only that connection: later ones each get a thread, and it is never served", () => {
    const dir = dirname(SERVER);
    const run = spawnSync("python3", ["-c", REFUSED_START, dir], {
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(run.status, run.stderr).to.equal(0);
    const served = JSON.parse(run.stdout) as string[];
    // "next" arrives while the only thread serves "held": it needs a thread of its own.
    expect(served).to.deep.equal(["first", "held", "next"]);
  });
});
