// The Node runtime's readiness pipe (FIZZ_READY_FD): what the process backend relies on to notice
// an instance the moment it listens, and what keeps the pipe out of the function's reach. A real
// process, real HTTP; fd 3 is a pipe as the process backend passes it.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
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
import { SERVER_ENTRY } from "./entry.js";

/** CPU time of all of a process's threads, in ms (scheduler statistics, ns resolution). */
function cpuMs(pid: number): number {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`))
    ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
  return ns / 1e6;
}

const SERVER = SERVER_ENTRY;

/** A new directory /tmp/<name of `length` characters>: paths shorter than mkdtemp makes. */
function shortDir(length: number): string {
  for (;;) {
    const dir = `/tmp/${Math.random()
      .toString(36)
      .slice(2, 2 + length)
      .padEnd(length, "0")}`;
    try {
      mkdirSync(dir, { mode: 0o700 });
      return dir;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
}

/** What the function sees of the start-up variables. */
const PROBE = `
  module.exports = async () => ({
    readyFd: process.env.FIZZ_READY_FD ?? null,
    warmUp: process.env.FIZZ_WARM_UP ?? null,
  });
`;

describe("node runtime: readiness announced on FIZZ_READY_FD", function () {
  this.timeout(20_000);
  let proc: ChildProcess | undefined;
  let scratch: string;
  let stderr: string;

  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), "fizz-node-ready-"));
    stderr = "";
  });
  afterEach(() => {
    proc?.kill("SIGKILL");
    rmSync(scratch, { recursive: true, force: true });
  });

  /**
   * @param extra variables to add; one set to undefined is left out (FIZZ_WARM_UP: unset)
   * @param wrapper what starts node (e.g. nice and taskset, then process.execPath)
   */
  async function start(
    extra: Record<string, string | undefined>,
    stdin: "ignore" | "pipe" = "ignore",
    nodeArgs: string[] = [],
    wrapper: string[] = [],
  ): Promise<{ url: string; pipe: Readable }> {
    const port = await freePort();
    // A pool instance warms up even when the machine is busy (src/warm-up-mode.mjs): these tests
    // are about its warm-up, and run on machines loaded by other work. Tests set "0" or unset it.
    const env = {
      ...minimalEnv(scratch),
      PORT: String(port),
      HOST: "127.0.0.1",
      FIZZ_WARM_UP: "1",
    };
    proc = spawn(wrapper[0] ?? process.execPath, [...wrapper.slice(1), ...nodeArgs, SERVER], {
      env: Object.fromEntries(
        Object.entries({ ...env, ...extra }).filter(([, v]) => v !== undefined),
      ),
      stdio: [stdin, "pipe", "pipe", "pipe"],
    });
    proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    return { url: `http://127.0.0.1:${port}`, pipe: proc.stdio[3] as Readable };
  }

  /**
   * An instance started for a waiting specialize as the process backend starts one, its parent
   * holding its stdin, once it has announced itself; `exited` resolves with its exit code.
   */
  async function startFollowingParent(): Promise<{ url: string; exited: Promise<number | null> }> {
    const { url, pipe } = await start(
      { FIZZ_READY_FD: "3", FIZZ_WARM_UP: "0", FIZZ_PARENT_STDIN: "1" },
      "pipe",
    );
    expect(await readAll(pipe)).to.equal("ready\n");
    const exited = new Promise<number | null>((resolve) => proc?.once("exit", resolve));
    return { url, exited };
  }

  /** Everything written on the pipe until the runtime's last descriptor on it is closed. */
  function readAll(pipe: Readable): Promise<string> {
    return new Promise((resolve, reject) => {
      let got = "";
      pipe.on("data", (d: Buffer) => (got += d.toString("latin1")));
      pipe.once("end", () => resolve(got));
      pipe.once("error", reject);
    });
  }

  /**
   * A pool instance specialized the moment it listens, during its warm-up, as the poolkeeper takes
   * one polled after its grace period; resolves with its URL once it closed its readiness pipe
   * with nothing written (EOF). The warm-up after the first /healthz answer is short (25-70 ms
   * measured here): a test process held up that long (a loaded CI) sent its specialize to an
   * instance that had announced already, which shows nothing of what these tests are about and
   * failed them on the announcement. Such an instance is dropped and another started; a runtime
   * that announces though taken announces every time, and fails here.
   */
  async function takeDuringWarmUp(
    env: Record<string, string>,
    body: unknown,
    header: Record<string, string> = {},
    nodeArgs: string[] = [],
  ): Promise<string> {
    const said: string[] = [];
    for (let attempt = 0; attempt < 5; attempt++) {
      proc?.kill("SIGKILL");
      const { url, pipe } = await start(env, "ignore", nodeArgs);
      const written = readAll(pipe);
      await waitForHealthz(url, 10_000);
      const loaded = await postJson(url, "/v2/specialize", body, header);
      expect(loaded.status, loaded.text).to.equal(200);
      said.push(await written);
      if (said.at(-1) === "") return url;
    }
    throw new Error(`announced though specialized, 5 times: ${JSON.stringify(said)}`);
  }

  it("writes one line once listening and closes the pipe, so the function never holds it", async () => {
    const { url, pipe } = await start({ FIZZ_READY_FD: "3", FIZZ_WARM_UP: "0" });
    // EOF: no descriptor on it is left in the runtime, so nothing it runs later can write to it.
    expect(await readAll(pipe)).to.equal("ready\n");
    expect((await request(url, { path: "/healthz" })).status).to.equal(200);
    const loaded = await postJson(url, "/v2/specialize", specializeBody("probe.js", PROBE));
    expect(loaded.status, loaded.text).to.equal(200);
    const seen = (await request(url, { headers: ME })).object();
    expect(seen).to.include({ readyFd: null, warmUp: null });
    // The rehearsal is skipped for a taken instance: its only lines are listening and specialized.
    expect(stderr.trim().split("\n")).to.have.length(2);
  });

  it("an instance started for a waiting specialize loads no node:crypto for a small single file", async () => {
    // Its load (~5-10 ms of CPU) was on an empty pool's request path, for a digest of a few
    // hundred bytes and the token comparison (src/sha256.mjs).
    const token = "t".repeat(43);
    const { url, pipe } = await start({
      FIZZ_READY_FD: "3",
      FIZZ_WARM_UP: "0",
      FIZZ_SPECIALIZE_TOKEN: token,
    });
    expect(await readAll(pipe)).to.equal("ready\n");
    const code = `module.exports = async () => ({
      crypto: process.moduleLoadList.filter((m) => m.startsWith("NativeModule crypto")),
    });`;
    const body = {
      ...specializeBody("crypto.js", code),
      digest: `sha256:${createHash("sha256").update(code).digest("hex")}`,
    };
    // Both checks still refuse: a wrong token, then a digest the code does not hash to.
    const wrongToken = { "x-fizz-specialize-token": `${token}x` };
    expect((await postJson(url, "/v2/specialize", body, wrongToken)).status).to.equal(401);
    const header = { "x-fizz-specialize-token": token };
    const tampered = { ...body, digest: `sha256:${"0".repeat(64)}` };
    expect((await postJson(url, "/v2/specialize", tampered, header)).status).to.equal(400);
    const loaded = await postJson(url, "/v2/specialize", body, header);
    expect(loaded.status, loaded.text).to.equal(200);
    expect((await request(url, { headers: ME })).object()).to.deep.equal({ crypto: [] });
  });

  it("an instance started for a waiting specialize watches its parent's stdin only once its first call is answered", async () => {
    // Opening stdin (~1-2 ms of CPU) came before the handlers' load, on the request's path.
    const { url, exited } = await startFollowingParent();
    // Read while the function loads, inside the specialize: the runtime does not watch stdin yet.
    const code = `const atLoad = process.stdin.listenerCount("end");
      module.exports = async () => ({ atLoad, now: process.stdin.listenerCount("end") });`;
    const loaded = await postJson(url, "/v2/specialize", specializeBody("stdin.js", code));
    expect(loaded.status, loaded.text).to.equal(200);
    type Seen = { atLoad: number; now: number };
    // Not during the first call either; after it, one more listener (a socket has its own 'end'
    // listener from the start).
    const first = (await request(url, { headers: ME })).object() as Seen;
    expect(first.now).to.equal(first.atLoad);
    const second = (await request(url, { headers: ME })).object() as Seen;
    expect(second.now).to.equal(second.atLoad + 1);
    // And the parent's end is still the instance's: it drains and exits.
    proc?.stdin?.end();
    expect(await exited).to.equal(0);
  });

  it("a function that removes FIZZ_PARENT_STDIN from its environment does not stop its instance from following its parent", async () => {
    // The watch begins after the first call, long after the function loaded: what it follows was
    // decided at start, not read from an environment the function can change.
    const { url, exited } = await startFollowingParent();
    const code = `delete process.env.FIZZ_PARENT_STDIN;
      module.exports = async () => ({ left: process.env.FIZZ_PARENT_STDIN ?? null });`;
    const loaded = await postJson(url, "/v2/specialize", specializeBody("unwatch.js", code));
    expect(loaded.status, loaded.text).to.equal(200);
    expect((await request(url, { headers: ME })).object()).to.deep.equal({ left: null });
    // Once the first call is answered the runtime follows stdin; its end drains and exits.
    await new Promise((r) => setTimeout(r, 50));
    proc?.stdin?.end();
    const outcome = await Promise.race([
      exited,
      new Promise<string>((r) => setTimeout(() => r("still running"), 5_000)),
    ]);
    expect(outcome).to.equal(0);
  });

  it("an instance started for a waiting specialize that never comes still exits when its parent closes stdin", async () => {
    const { exited } = await startFollowingParent();
    // Closed before the runtime reads it: the EOF waits in the pipe until it watches (1 s at most).
    proc?.stdin?.end();
    expect(await exited).to.equal(0);
  });

  it("a pool instance announces only once its warm-up is over: it then sits idle until taken", async () => {
    const { url, pipe } = await start({ FIZZ_READY_FD: "3" });
    expect(await readAll(pipe)).to.equal("ready\n");
    // The rehearsal and the archive preload cost tens of ms of CPU; announced before them, they
    // ran after this point, next to whatever specialize came first.
    const pid = proc?.pid ?? 0;
    const before = cpuMs(pid);
    await new Promise((r) => setTimeout(r, 500));
    expect(cpuMs(pid) - before).to.be.below(10);
    const loaded = await postJson(url, "/v2/specialize", specializeBody("probe.js", PROBE));
    expect(loaded.status, loaded.text).to.equal(200);
    expect((await request(url, { headers: ME })).object()).to.include({ readyFd: null });
  });

  // The two starts below share one core with a busy loop of a higher priority (~10% of it).
  const STARVED_CPU = ["taskset", "-c", "0"];
  /** A function saying whether the warm-up's modules (archive support, node:v8) were loaded. */
  const WARM_UP_PROBE = `module.exports = async () => ({
    archive: process.moduleLoadList.includes("NativeModule zlib"),
    eager: process.moduleLoadList.includes("NativeModule v8"),
  });`;

  it("a pool refill started on a busy machine skips its warm-up: announced on listen, nothing preloaded", async () => {
    // src/warm-up-mode.mjs: FIZZ_WARM_UP unset (as the process backend starts a refill) and the
    // start got less than a third of the CPU of its wall time. Made so here: the runtime shares
    // one core with a busy loop of a higher priority (~10% of the core), until it has announced.
    const spinner = spawn(
      STARVED_CPU[0]!,
      [...STARVED_CPU.slice(1), process.execPath, "-e", "for (;;);"],
      {
        stdio: "ignore",
      },
    );
    try {
      const code = WARM_UP_PROBE;
      const wrapper = ["nice", "-n", "10", ...STARVED_CPU, process.execPath];
      const env = { FIZZ_READY_FD: "3", FIZZ_WARM_UP: undefined };
      const { url, pipe } = await start(env, "ignore", [], wrapper);
      expect(await readAll(pipe)).to.equal("ready\n");
      spinner.kill("SIGKILL");
      const loaded = await postJson(url, "/v2/specialize", specializeBody("probe.js", code));
      expect(loaded.status, loaded.text).to.equal(200);
      const seen = (await request(url, { headers: ME })).object();
      expect(seen).to.deep.equal({ archive: false, eager: false });
      // Said in its log, so that a slower first call can be told apart.
      expect(stderr).to.match(
        /listening on .*; warm-up skipped: started busy \(wall \d+\.\dx CPU\)/,
      );
    } finally {
      spinner.kill("SIGKILL");
    }
    // ~10% of one core until it listens, less on a loaded machine (a CI's other tests): ~1-4 s
    // here at load 2-8, more where the core is shared with more.
  }).timeout(45_000);

  it("an instance without a readiness pipe (a kubernetes pod) warms up however slowly it started", async () => {
    // A pod's start is slow by its own CPU limit (CFS throttling: a 100m limit measured wall ~6-7x
    // CPU at the first module), not by a busy machine; and it is not a process backend refill,
    // niced until ready and handed out at once. The busy rule is the process backend's only.
    const spinner = spawn(
      STARVED_CPU[0]!,
      [...STARVED_CPU.slice(1), process.execPath, "-e", "for (;;);"],
      {
        stdio: "ignore",
      },
    );
    try {
      const code = WARM_UP_PROBE;
      const wrapper = ["nice", "-n", "10", ...STARVED_CPU, process.execPath];
      const { url } = await start({ FIZZ_WARM_UP: undefined }, "ignore", [], wrapper);
      await waitForHealthz(url, 15_000);
      spinner.kill("SIGKILL");
      // No announcement to wait for: the warm-up is over once the instance stops using CPU (two
      // quiet 200 ms in a row; a specialize during it would end it early).
      const pid = proc?.pid ?? 0;
      for (let last = cpuMs(pid), quiet = 0, i = 0; quiet < 2 && i < 50; i++) {
        await new Promise((r) => setTimeout(r, 200));
        const now = cpuMs(pid);
        quiet = now - last < 2 ? quiet + 1 : 0;
        last = now;
      }
      const loaded = await postJson(url, "/v2/specialize", specializeBody("probe.js", code));
      expect(loaded.status, loaded.text).to.equal(200);
      const seen = (await request(url, { headers: ME })).object();
      expect(seen).to.deep.equal({ archive: true, eager: true });
    } finally {
      spinner.kill("SIGKILL");
    }
    // ~10% of one core until it listens, less on a loaded machine (a CI's other tests): ~1-4 s
    // here at load 2-8, more where the core is shared with more.
  }).timeout(45_000);

  it("a pool instance runs no optimizing compile in its specialize and first call, whatever its paths' lengths", async () => {
    // V8's optimizing compile of a hot function costs ~2-5 ms of CPU (a compiler thread, page
    // faults): the rehearsal runs the specialize's hot code (SHA-256, node:path) far enough that
    // it happens before the announcement. How far start-up alone gets depends on the lengths of
    // the paths (short ones leave node:path's normalizeString for the specialize): work
    // directories of several short lengths, as TMPDIR and HOME too, as the process backend sets.
    const token = "t".repeat(43);
    const code = `module.exports = async () => ({ status: 200, body: "hi" });`;
    const body = {
      ...specializeBody("hello.js", code),
      digest: `sha256:${createHash("sha256").update(code).digest("hex")}`,
    };
    for (const length of [2, 3, 4, 5, 6]) {
      const workdir = shortDir(length);
      try {
        let out = "";
        const { url, pipe } = await start(
          {
            FIZZ_READY_FD: "3",
            FIZZ_SPECIALIZE_TOKEN: token,
            FIZZ_WORKDIR: workdir,
            TMPDIR: workdir,
            HOME: workdir,
          },
          "ignore",
          ["--trace-opt"],
        );
        proc?.stdout?.on("data", (d: Buffer) => (out += d.toString()));
        expect(await readAll(pipe)).to.equal("ready\n");
        // Whatever was compiled before the announcement is its warm-up's business.
        const before = out.length;
        const header = { "x-fizz-specialize-token": token };
        const loaded = await postJson(url, "/v2/specialize", body, header);
        expect(loaded.status, loaded.text).to.equal(200);
        expect((await request(url, { headers: ME })).text).to.equal("hi");
        await new Promise((r) => setTimeout(r, 100));
        const lines = out.slice(before).split("\n");
        const compiled = lines.filter((l) => l.includes("compiling method"));
        expect(compiled, `work directory ${workdir}`).to.deep.equal([]);
      } finally {
        proc?.kill("SIGKILL");
        rmSync(workdir, { recursive: true, force: true });
      }
    }
  });

  it("a pool instance compiles no regular expression to native code in its specialize and first call", async () => {
    // V8 interprets a RegExp's first run and compiles it to native code on its second: the
    // rehearsal runs the checks' expressions twice, so those compiles (six of them, ~0.2 ms of
    // the main thread) happen before the announcement and not on the cold-start path.
    const token = "t".repeat(43);
    const code = `module.exports = async () => ({ status: 200, body: "hi" });`;
    const body = {
      ...specializeBody("hello.js", code),
      instanceId: "pool-1",
      concurrency: 10,
      env: {},
      secrets: {},
      configmaps: {},
      digest: `sha256:${createHash("sha256").update(code).digest("hex")}`,
    };
    let out = "";
    const { url, pipe } = await start(
      { FIZZ_READY_FD: "3", FIZZ_SPECIALIZE_TOKEN: token, FIZZ_INSTANCE_ID: "pool-1" },
      "ignore",
      ["--trace-regexp-tier-up"],
    );
    proc?.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    expect(await readAll(pipe)).to.equal("ready\n");
    const before = out.length;
    const header = { "x-fizz-specialize-token": token };
    const loaded = await postJson(url, "/v2/specialize", body, header);
    expect(loaded.status, loaded.text).to.equal(200);
    const headers = { "x-fizz-instance": "pool-1", "x-request-id": "req-1" };
    expect((await request(url, { headers })).text).to.equal("hi");
    await new Promise((r) => setTimeout(r, 100));
    const tierUps = out
      .slice(before)
      .split("\n")
      .filter((l) => l.includes("tier-up"));
    expect(tierUps).to.deep.equal([]);
  });

  it("a pool instance switches V8's default flags back once its rehearsal is over: its archive support and its function load built-ins with Node's code cache", async () => {
    // The warm-up runs with eager feedback allocation (src/eager-feedback.mjs) and must switch it
    // off again: V8 takes a code cache only under the flags it was made with, so a built-in loaded
    // later would be compiled from its source. node:zlib: loaded by the archive support (tar)
    // preloaded after the rehearsal, before the announcement, so it tells the switch at the end of
    // the warm-up from the one at the specialize's arrival (which alone keeps the function's
    // node:readline cached). Nothing of the runtime loads node:readline (checked).
    // --expose-internals is a Node option, not a V8 flag: the build's own cache still fits.
    const token = "t".repeat(43);
    const code = `module.exports = async () => {
      const loadedBefore = process.moduleLoadList.includes("NativeModule readline");
      const preloaded = process.moduleLoadList.includes("NativeModule zlib");
      require("node:readline");
      const { internalBinding } = require("internal/test/binding");
      const { compiledWithoutCache } = internalBinding("builtins").getCacheUsage();
      return { loadedBefore, preloaded, withoutCache: [...compiledWithoutCache] };
    };`;
    const body = {
      ...specializeBody("hello.js", code),
      digest: `sha256:${createHash("sha256").update(code).digest("hex")}`,
    };
    const nodeArgs = ["--expose-internals", "--no-warnings"];
    const env = { FIZZ_READY_FD: "3", FIZZ_SPECIALIZE_TOKEN: token };
    const { url, pipe } = await start(env, "ignore", nodeArgs);
    expect(await readAll(pipe)).to.equal("ready\n");
    const header = { "x-fizz-specialize-token": token };
    const loaded = await postJson(url, "/v2/specialize", body, header);
    expect(loaded.status, loaded.text).to.equal(200);
    const res = await request(url, { headers: ME });
    expect(res.status, res.text).to.equal(200);
    const seen = JSON.parse(res.text) as {
      loadedBefore: boolean;
      preloaded: boolean;
      withoutCache: string[];
    };
    expect(seen.loadedBefore).to.equal(false);
    expect(seen.preloaded, "node:zlib loaded by the archive preload").to.equal(true);
    expect(seen.withoutCache).to.not.include("zlib");
    expect(seen.withoutCache).to.not.include("readline");
  });

  it("a pool instance taken during its warm-up loads the function under V8's default flags", async () => {
    // Taken while the rehearsal runs under eager feedback allocation: the flag is switched back
    // when the specialize arrives, not when the rehearsal gets round to stopping, so a built-in
    // the function's top level loads still comes from Node's code cache.
    const token = "t".repeat(43);
    const code = `const loadedBefore = process.moduleLoadList.includes("NativeModule readline");
      require("node:readline");
      const { internalBinding } = require("internal/test/binding");
      const { compiledWithoutCache } = internalBinding("builtins").getCacheUsage();
      const seen = { loadedBefore, withoutCache: [...compiledWithoutCache] };
      module.exports = async () => seen;`;
    const body = {
      ...specializeBody("hello.js", code),
      digest: `sha256:${createHash("sha256").update(code).digest("hex")}`,
    };
    const env = { FIZZ_READY_FD: "3", FIZZ_SPECIALIZE_TOKEN: token };
    const header = { "x-fizz-specialize-token": token };
    const nodeArgs = ["--expose-internals", "--no-warnings"];
    const url = await takeDuringWarmUp(env, body, header, nodeArgs);
    const res = await request(url, { headers: ME });
    expect(res.status, res.text).to.equal(200);
    const seen = JSON.parse(res.text) as { loadedBefore: boolean; withoutCache: string[] };
    expect(seen.loadedBefore).to.equal(false);
    expect(seen.withoutCache).to.not.include("readline");
  });

  it("a pool instance taken before its announcement closes the pipe unwritten before the function loads", async () => {
    // EOF with nothing written (takeDuringWarmUp): the runtime holds no descriptor on it, and
    // never announced.
    const url = await takeDuringWarmUp({ FIZZ_READY_FD: "3" }, specializeBody("probe.js", PROBE));
    expect((await request(url, { headers: ME })).object()).to.include({ readyFd: null });
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
