import { readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { createLogger, silentLogger } from "@fizz/kit";
import { expect } from "chai";
import { Agent, request } from "undici";
import { instanceAgent } from "../src/instance-http";
import { DEFAULT_RUNTIMES_DIR, loadConfig } from "../src/config";
import { ProcessBackend } from "../src/process-backend";
import { env } from "./fake-backend";

/** The backend's client for its instances; the test's own requests go over undici. */
const instancesAgent = instanceAgent();

/** The documented process-backend variables (docs/runtime-contract.md), and nothing else. */
const DOCUMENTED = [
  "FIZZ_INSTANCE_ID",
  "FIZZ_PARENT_STDIN",
  "FIZZ_SPECIALIZE_TOKEN",
  "FIZZ_WORKDIR",
  "HOME",
  "HOST",
  "LANG",
  "PATH",
  "PORT",
  "PYTHONUNBUFFERED",
  "TMPDIR",
  "TZ",
];

/** The variables a process started with (its exec'd environment block) and its real uid. */
function startedWith(pid: number): { vars: string[]; uid: number } {
  const vars = readFileSync(`/proc/${pid}/environ`, "latin1")
    .split("\0")
    .filter(Boolean)
    .map((kv) => kv.slice(0, kv.indexOf("=")));
  const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  return { vars, uid };
}

/**
 * The Go, PHP, Ruby and C# runtimes started by the real process backend, as the poolkeeper
 * configures itself here (as root in CI: each instance its own uid through setpriv): each becomes
 * healthy with only the documented variables, none of the poolkeeper's, under its own uid.
 * A runtime this host cannot run (not installed, not prepared) is skipped with its reason.
 */
describe("process backend: the go, php, ruby and dotnet runtimes under instance isolation", function () {
  this.timeout(60_000);
  let workDir: string;
  let agent: Agent;
  let backend: ProcessBackend;

  before(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), "fizz-pb-rt-"));
    agent = new Agent();
    const config = loadConfig({ FIZZ_WORKDIR: workDir });
    backend = new ProcessBackend({
      workDir,
      runtimesDir: DEFAULT_RUNTIMES_DIR,
      python: config.python,
      interpreters: config.interpreters,
      spawnTimeoutMs: 20_000,
      killGraceMs: 2000,
      baseEnv: config.instanceEnv,
      isolation: config.isolation,
      allowEnvCommand: false,
      agent: instancesAgent,
      logger: silentLogger(),
    });
  });
  after(async () => {
    await backend?.close();
    await agent?.close();
    await rm(workDir, { recursive: true, force: true });
  });

  for (const runtime of ["go", "php", "ruby", "dotnet"]) {
    it(`starts fizz/env-${runtime} healthy with only the documented variables, as its own uid when root`, async function () {
      const e = env(runtime, { image: `fizz/env-${runtime}` });
      const why = backend.unsupported(e);
      if (why) {
        console.log(`      (skipped: ${why})`);
        this.skip();
      }
      process.env.FIZZ_NATS_PASSWORD = "must-not-leak";
      try {
        const inst = await backend.spawn(e);
        const res = await request(`${inst.address}/healthz`, { dispatcher: agent });
        expect(res.statusCode).to.equal(200);
        expect(await res.body.json()).to.deep.include({ state: "warm" });
        const seen = startedWith(inst.pid!);
        // Go's warm instance announces readiness too (runtimes/go/runtime/fizz_warm.go).
        const documented = runtime === "go" ? [...DOCUMENTED, "FIZZ_READY_FD"] : DOCUMENTED;
        expect(seen.vars.filter((v) => !documented.includes(v))).to.deep.equal([]);
        if (process.getuid?.() === 0) {
          expect(inst.uid).to.be.a("number").and.at.least(1000);
          expect(seen.uid).to.equal(inst.uid);
        }
        await backend.kill(inst.id, "test done");
      } finally {
        delete process.env.FIZZ_NATS_PASSWORD;
      }
    });
  }
});

/**
 * The node runtime under the real process backend announces readiness on its pipe (FIZZ_READY_FD)
 * instead of waiting to be found by /healthz polling; an instance spawned for a waiting
 * specialize is told to skip its warm-up (FIZZ_WARM_UP=0), one for the pool is not.
 */
describe("process backend: the node, python and go runtimes announce readiness", function () {
  this.timeout(60_000);
  let workDir: string;
  let agent: Agent;
  let backend: ProcessBackend;
  const lines: Array<{ msg?: string; ready?: string; instance?: string }> = [];

  before(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), "fizz-pb-ready-"));
    agent = new Agent();
    const config = loadConfig({ FIZZ_WORKDIR: workDir });
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split("\n").filter(Boolean))
          lines.push(JSON.parse(l) as (typeof lines)[number]);
        done();
      },
    });
    backend = new ProcessBackend({
      workDir,
      runtimesDir: DEFAULT_RUNTIMES_DIR,
      python: config.python,
      spawnTimeoutMs: 20_000,
      killGraceMs: 2000,
      baseEnv: config.instanceEnv,
      isolation: config.isolation,
      allowEnvCommand: false,
      agent: instancesAgent,
      logger: createLogger("poolkeeper", "debug", sink),
      // These tests hold that the runtime announces: a loaded machine's start past the default
      // grace would let the poll see it first (the product's fallback, not what is tested here).
      announceGraceMs: 60_000,
    });
  });
  after(async () => {
    await backend?.close();
    await agent?.close();
    await rm(workDir, { recursive: true, force: true });
  });

  for (const taken of [false, true]) {
    it(`is noticed through its pipe (${taken ? "taken for a specialize" : "for the pool"})`, async () => {
      const inst = await backend.spawn(env("node", { image: "fizz/env-node" }), { taken });
      const ready = lines.find((l) => l.msg === "ready" && l.instance === inst.id);
      expect(ready?.ready).to.equal("announced");
      const res = await request(`${inst.address}/healthz`, { dispatcher: agent });
      expect(res.statusCode).to.equal(200);
      await res.body.text();
      const vars = readFileSync(`/proc/${inst.pid!}/environ`, "latin1").split("\0");
      expect(vars).to.include("FIZZ_READY_FD=3");
      expect(vars.includes("FIZZ_WARM_UP=0")).to.equal(taken);
      await backend.kill(inst.id, "test done");
    });
  }

  it("starts node from its one-file build and code cache, which the instance's uid can read but not change", async () => {
    const inst = await backend.spawn(env("node", { image: "fizz/env-node" }), { taken: true });
    const argv = readFileSync(`/proc/${inst.pid!}/cmdline`, "utf8").split("\0").filter(Boolean);
    const bundle = path.join(DEFAULT_RUNTIMES_DIR, "node", ".build", "server.cjs");
    // The loader that runs the bundle with its V8 code cache (runtimes/node/start-cached.cjs).
    expect(argv).to.deep.equal([
      process.execPath,
      path.join(DEFAULT_RUNTIMES_DIR, "node", "start-cached.cjs"),
    ]);
    for (const file of [bundle, `${bundle}.cache`]) {
      const st = statSync(file);
      expect(st.mode & 0o777).to.equal(0o644);
      expect(st.uid).to.equal(process.getuid!());
      if (inst.uid !== undefined) expect(st.uid).to.not.equal(inst.uid);
    }
    await backend.kill(inst.id, "test done");
  });

  it("notices the go runtime through its pipe too, before any /healthz poll", async function () {
    const e = env("go", { image: "fizz/env-go" });
    const why = backend.unsupported(e);
    if (why) {
      console.log(`      (skipped: ${why})`);
      this.skip();
    }
    const inst = await backend.spawn(e, { taken: true });
    const ready = lines.find((l) => l.msg === "ready" && l.instance === inst.id);
    expect(ready?.ready).to.equal("announced");
    const vars = readFileSync(`/proc/${inst.pid!}/environ`, "latin1").split("\0");
    expect(vars).to.include("FIZZ_READY_FD=3");
    const res = await request(`${inst.address}/healthz`, { dispatcher: agent });
    expect(res.statusCode).to.equal(200);
    await res.body.text();
    await backend.kill(inst.id, "test done");
  });

  it("notices the python runtime through its pipe too", async () => {
    const inst = await backend.spawn(env("python", { image: "fizz/env-python" }), { taken: true });
    const ready = lines.find((l) => l.msg === "ready" && l.instance === inst.id);
    expect(ready?.ready).to.equal("announced");
    const res = await request(`${inst.address}/healthz`, { dispatcher: agent });
    expect(res.statusCode).to.equal(200);
    await res.body.text();
    await backend.kill(inst.id, "test done");
  });
});
