// The Go runtime's readiness pipe (FIZZ_READY_FD): what the process backend relies on to notice a
// warm instance the moment it listens instead of polling /healthz with back-off, and what keeps the
// pipe and its variables out of the function's process (the same pid, after the exec handoff).
// A real warm binary, real HTTP; fd 3 is a pipe as the process backend passes it.
import { expect } from "chai";
import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { packageArchive } from "../../contract/archive.js";
import {
  type Runtime,
  freePort,
  minimalEnv,
  request,
  specializeArchive,
  waitForHealthz,
} from "../../contract/harness.js";
import { ME } from "../../contract/runtime-contract.js";
import { HELLO, WARM_BINARY, compile, ensurePrepared } from "./fixtures.js";

/** What the function sees of the start-up variables: a handler that prints them. */
const PROBE = {
  "probe.go": [
    "package main",
    "",
    "import (",
    '\t"fmt"',
    '\t"net/http"',
    '\t"os"',
    ")",
    "",
    "func Handler(w http.ResponseWriter, r *http.Request) {",
    '\t_, fd := os.LookupEnv("FIZZ_READY_FD")',
    '\t_, warm := os.LookupEnv("FIZZ_WARM_UP")',
    '\tfmt.Fprintf(w, "%v %v", fd, warm)',
    "}",
    "",
  ].join("\n"),
};

/** Everything written on the pipe until the runtime's last descriptor on it is closed. */
function readAll(pipe: Readable): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = "";
    pipe.on("data", (d: Buffer) => (got += d.toString("latin1")));
    pipe.once("end", () => resolve(got));
    pipe.once("error", reject);
  });
}

/** The targets of a process's descriptors ("socket:[123]", "pipe:[456]", paths). */
function descriptors(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.push(readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

describe("go runtime: readiness announced on FIZZ_READY_FD", function () {
  this.timeout(180_000);
  let proc: ChildProcess | undefined;
  let scratch: string;
  let stderr: string;
  let stdout: string;

  before(async function () {
    this.timeout(900_000);
    await ensurePrepared();
  });
  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), "fizz-go-ready-"));
    stderr = "";
    stdout = "";
  });
  afterEach(() => {
    proc?.kill("SIGKILL");
    proc = undefined;
    rmSync(scratch, { recursive: true, force: true });
  });

  async function start(
    extra: Record<string, string>,
    stdio: StdioOptions = ["ignore", "pipe", "pipe", "pipe"],
  ): Promise<{ rt: Runtime; pipe: Readable }> {
    const port = await freePort();
    const child = spawn(WARM_BINARY, ["--warm"], {
      env: { ...minimalEnv(scratch), PORT: String(port), HOST: "127.0.0.1", ...extra },
      stdio,
    });
    proc = child;
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const rt = {
      url: `http://127.0.0.1:${port}`,
      proc: child,
      stdout: () => stdout,
      stderr: () => stderr,
      exited,
      kill: () => Promise.resolve(),
    } as unknown as Runtime;
    return { rt, pipe: child.stdio[3] as Readable };
  }

  it("writes one line once listening and closes the pipe, so the function's binary never holds it", async () => {
    const { rt, pipe } = await start({ FIZZ_READY_FD: "3", FIZZ_WARM_UP: "0" });
    const pipeName = readlinkSync(`/proc/${rt.proc.pid!}/fd/3`);
    // EOF: no descriptor on it is left in the runtime, so nothing it execs later can write to it.
    expect(await readAll(pipe)).to.equal("ready\n");
    // Announced after listening: /healthz answers at once, no retry needed.
    expect((await request(rt.url, { path: "/healthz" })).status).to.equal(200);
    expect(stderr).to.match(/go runtime listening on 127\.0\.0\.1:\d+/);
    const loaded = await specializeArchive(rt, await packageArchive(await compile(PROBE)));
    expect(loaded.status, loaded.text).to.equal(200);
    expect(readlinkSync(`/proc/${rt.proc.pid!}/exe`)).to.match(/\/fn\/fizz-function$/);
    // Neither variable reached the function, and its process holds no descriptor on the pipe.
    expect((await request(rt.url, { headers: ME })).text).to.equal("false false");
    expect(descriptors(rt.proc.pid!)).to.not.include(pipeName);
    const environ = readFileSync(`/proc/${rt.proc.pid!}/environ`, "latin1").split("\0");
    expect(environ.filter((v) => v.startsWith("FIZZ_READY_FD="))).to.deep.equal([]);
  });

  it("announces nothing on a descriptor it was not told about, and still serves", async () => {
    const { rt, pipe } = await start({});
    const got = readAll(pipe);
    await waitForHealthz(rt.url, 10_000, rt.exited);
    const loaded = await specializeArchive(rt, await packageArchive(await compile(HELLO_FILES)));
    expect(loaded.status, loaded.text).to.equal(200);
    proc?.kill("SIGKILL");
    expect(await got).to.equal("");
  });

  it("takes no descriptor it was not given: FIZZ_READY_FD=3 without a fd 3 leaves its own listener alone and it serves", async () => {
    // Read after listening, 3 named the runtime's own socket, which the announcement closed.
    const { rt } = await start({ FIZZ_READY_FD: "3" }, ["ignore", "pipe", "pipe"]);
    await waitForHealthz(rt.url, 10_000, rt.exited);
    const loaded = await specializeArchive(rt, await packageArchive(await compile(HELLO_FILES)));
    expect(loaded.status, loaded.text).to.equal(200);
    expect(stderr).to.include("readiness not announced");
  });

  it("writes nothing to a descriptor that is not a pipe (a file on fd 3)", async () => {
    const file = join(scratch, "not-a-pipe");
    writeFileSync(file, "");
    const fd = openSync(file, "r+");
    try {
      const { rt } = await start({ FIZZ_READY_FD: "3" }, ["ignore", "pipe", "pipe", fd]);
      await waitForHealthz(rt.url, 10_000, rt.exited);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(file, "latin1")).to.equal("");
    expect(stderr).to.include("readiness not announced");
  });

  for (const bad of ["1", "2", "x"]) {
    it(`refuses FIZZ_READY_FD=${bad} (never writes to stdout/stderr or a non-number) and is found by polling`, async () => {
      const { rt } = await start({ FIZZ_READY_FD: bad });
      await waitForHealthz(rt.url, 10_000, rt.exited);
      expect(stdout + stderr).to.not.include("ready\n");
      expect(stderr).to.include("readiness not announced");
    });
  }
});

const HELLO_FILES = { [HELLO.filename]: HELLO.source };
