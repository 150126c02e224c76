// The Python runtime's readiness pipe (FIZZ_READY_FD): what the process backend relies on to
// notice an instance the moment it listens, and what keeps the pipe out of the function's reach.
// A real process, real HTTP; fd 3 is a pipe as the process backend passes it.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { freePort } from "../../contract/harness.js";
import { expect } from "chai";
import {
  minimalEnv,
  postJson,
  request,
  specializeBody,
  waitForHealthz,
} from "../../contract/harness.js";
import { ME } from "../../contract/runtime-contract.js";

const SERVER = fileURLToPath(new URL("../server.py", import.meta.url));

/** What the function sees of the pipe's variable. */
const PROBE = `import os\n\ndef main():\n    return os.environ.get("FIZZ_READY_FD", "absent")\n`;

describe("python runtime: readiness announced on FIZZ_READY_FD", function () {
  this.timeout(20_000);
  let proc: ChildProcess | undefined;
  let scratch: string;

  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), "fizz-python-ready-"));
  });
  afterEach(() => {
    proc?.kill("SIGKILL");
    rmSync(scratch, { recursive: true, force: true });
  });

  async function start(
    extra: Record<string, string>,
  ): Promise<{ url: string; pipe: Readable; stderr: () => string }> {
    const port = await freePort();
    proc = spawn("python3", [SERVER], {
      env: { ...minimalEnv(scratch), PORT: String(port), HOST: "127.0.0.1", ...extra },
      stdio: ["ignore", "ignore", "pipe", "pipe"],
    });
    let err = "";
    proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
    return { url: `http://127.0.0.1:${port}`, pipe: proc.stdio[3] as Readable, stderr: () => err };
  }

  /** What the runtime had said on stderr when the first byte arrived on the pipe. */
  function stderrAtAnnouncement(pipe: Readable, stderr: () => string): Promise<string> {
    return new Promise((resolve, reject) => {
      pipe.once("data", () => resolve(stderr()));
      pipe.once("end", () => reject(new Error("the pipe closed unwritten")));
    });
  }

  /** The preload's last word: Flask imported, not installed, or broken. */
  const PRELOAD_OVER = /flask (imported in the background|is not installed|does not import)/;

  /** Everything written on the pipe until the runtime's last descriptor on it is closed. */
  function readAll(pipe: Readable): Promise<string> {
    return new Promise((resolve, reject) => {
      let got = "";
      pipe.on("data", (d: Buffer) => (got += d.toString("latin1")));
      pipe.once("end", () => resolve(got));
      pipe.once("error", reject);
    });
  }

  it("writes one line once listening and closes the pipe, so the function never holds it", async () => {
    const { url, pipe } = await start({ FIZZ_READY_FD: "3" });
    // EOF: no descriptor on it is left in the runtime, so nothing it runs later can write to it.
    expect(await readAll(pipe)).to.equal("ready\n");
    expect((await request(url, { path: "/healthz" })).status).to.equal(200);
    const loaded = await postJson(url, "/v2/specialize", specializeBody("probe.py", PROBE));
    expect(loaded.status, loaded.text).to.equal(200);
    const seen = await request(url, { headers: ME });
    expect(seen.text).to.equal("absent");
  });

  it("a pool instance announces once its Flask preload is over, so a full pool has no start-up CPU left", async () => {
    const { pipe, stderr } = await start({ FIZZ_READY_FD: "3" });
    const said = await stderrAtAnnouncement(pipe, stderr);
    expect(said).to.match(PRELOAD_OVER);
  });

  it("an instance a specialize waits for (FIZZ_WARM_UP=0) announces on listen, before the preload", async () => {
    const { pipe, stderr } = await start({ FIZZ_READY_FD: "3", FIZZ_WARM_UP: "0" });
    const said = await stderrAtAnnouncement(pipe, stderr);
    expect(said).to.contain("listening");
    expect(said).not.to.contain("imported in the background");
  });

  it("a specialize that comes before the announcement closes the pipe before the function loads", async () => {
    const { url, pipe } = await start({ FIZZ_READY_FD: "3" });
    const all = readAll(pipe);
    await waitForHealthz(url, 10_000);
    const loaded = await postJson(url, "/v2/specialize", specializeBody("probe.py", PROBE));
    expect(loaded.status, loaded.text).to.equal(200);
    // Either the preload won the race (announced) or the specialize closed it unwritten.
    expect(await all).to.be.oneOf(["", "ready\n"]);
    expect((await request(url, { headers: ME })).text).to.equal("absent");
  });

  it("a specialize racing the announcement returns only once the descriptor is closed", async () => {
    // The preload thread announces while a specialize closes: the slower write (os.write held
    // for 300 ms here) must not leave the descriptor open once close() has returned, since user
    // code loads right after it.
    const script = [
      "import os, sys, threading, time",
      `sys.path.insert(0, ${JSON.stringify(join(SERVER, ".."))})`,
      "from fizz_readiness import Readiness",
      "r, w = os.pipe()",
      "os.environ['FIZZ_READY_FD'] = str(w)",
      "ready = Readiness()",
      "real_write = os.write",
      "def slow_write(fd, data):",
      "    time.sleep(0.3)",
      "    return real_write(fd, data)",
      "os.write = slow_write",
      "t = threading.Thread(target=ready.announce)",
      "t.start()",
      "time.sleep(0.1)",
      "ready.close()",
      "try:",
      "    os.fstat(w)",
      "    print('open')",
      "except OSError:",
      "    print('closed')",
      "t.join()",
    ].join("\n");
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn("python3", ["-c", script], { stdio: ["ignore", "pipe", "inherit"] });
      let got = "";
      p.stdout.on("data", (d: Buffer) => (got += d.toString()));
      p.once("error", reject);
      p.once("close", () => resolve(got.trim()));
    });
    expect(out).to.equal("closed");
  });

  it("without FIZZ_READY_FD writes nothing on fd 3 and still serves", async () => {
    const { url, pipe } = await start({});
    let got = "";
    pipe.on("data", (d: Buffer) => (got += d.toString()));
    await waitForHealthz(url, 10_000);
    expect(got).to.equal("");
    expect((await request(url, { path: "/healthz" })).status).to.equal(200);
  });
});
