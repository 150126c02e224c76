import { execFile } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { FizzError } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { Agent, request } from "undici";
import { instanceAgent } from "../src/instance-http";
import type { ExitInfo } from "../src/backend";
import { loadConfig } from "../src/config";
import { instanceBaseEnv } from "../src/isolation";
import { REFILL_NICE, StartPriority } from "../src/instance-launch";
import { ProcessBackend } from "../src/process-backend";
import { alive } from "./harness";
import { env } from "./fake-backend";

/** The backend's client for its instances; the test's own requests go over undici. */
const instancesAgent = instanceAgent();

const FIXTURE = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "fixtures/fake-runtime.mjs",
);

/** Whether refills are niced here: root with CAP_SYS_ADMIN, autogroups on (StartPriority). */
function autogroupOn(): boolean {
  return new StartPriority().enabled;
}

/** Real child processes (a stand-in loader), no NATS or Redis. */
describe("process backend (real child processes)", function () {
  this.timeout(30_000);
  let workDir: string;
  let agent: Agent;
  let backend: ProcessBackend;
  let exits: Array<{ id: string; info: ExitInfo }>;
  let output: string[];

  function make(
    extraEnv: Record<string, string> = {},
    killGraceMs = 2000,
    refillLowPriorityMs?: number,
  ): ProcessBackend {
    backend = new ProcessBackend({
      workDir,
      runtimesDir: "/nonexistent-runtimes",
      python: "python3",
      spawnTimeoutMs: 5000,
      killGraceMs,
      baseEnv: { ...instanceBaseEnv({}), ...extraEnv },
      // As the poolkeeper configures itself here: its own uid per instance when root (CI).
      isolation: loadConfig({}).isolation,
      allowEnvCommand: true,
      agent: instancesAgent,
      logger: silentLogger(),
      ...(refillLowPriorityMs !== undefined ? { refillLowPriorityMs } : {}),
    });
    backend.onExit((i, info) => exits.push({ id: i.id, info }));
    backend.onOutput((i, stream, line) => output.push(`${i.id} ${stream} ${line}`));
    return backend;
  }
  const fake = (name = "fake") =>
    env(name, { image: "acme/custom", command: [process.execPath, FIXTURE] });

  beforeEach(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), "fizz-pb-"));
    agent = new Agent();
    exits = [];
    output = [];
  });
  afterEach(async () => {
    await backend?.close();
    await agent.close();
    await rm(workDir, { recursive: true, force: true });
  });

  it("resolves the command from the image, or from spec.command, and names what it cannot run", () => {
    make();
    expect(backend.command(env("n", { image: "ghcr.io/x/env-node:20" }))).to.deep.equal([
      process.execPath,
      "/nonexistent-runtimes/node/server.mjs",
    ]);
    expect(backend.command(env("p", { image: "fizz/env-python" }))).to.deep.equal([
      "python3",
      "/nonexistent-runtimes/python/server.py",
    ]);
    expect(backend.command(fake())).to.deep.equal([process.execPath, FIXTURE]);
    expect(backend.unsupported(env("x", { image: "acme/ruby" }))).to.match(
      /acme\/ruby.*no command/,
    );
  });

  it("starts an instance on its own port with its variables and work dir, and streams its output", async () => {
    make();
    const inst = await backend.spawn(fake());
    const res = await request(`${inst.address}/healthz`, { dispatcher: agent });
    const { env: seen } = (await res.body.json()) as { env: Record<string, string | undefined> };
    const dir = path.join(workDir, "instances", inst.id);
    expect(seen).to.deep.include({
      PORT: new URL(inst.address).port,
      HOST: "127.0.0.1",
      FIZZ_INSTANCE_ID: inst.id,
      FIZZ_WORKDIR: dir,
      FIZZ_PARENT_STDIN: "1",
    });
    expect(existsSync(dir)).to.equal(true);
    expect(inst.specializeToken).to.match(/^[A-Za-z0-9_-]{43}$/);
    await waitFor(
      () =>
        output.includes(`${inst.id} stdout hello on stdout`) &&
        output.includes(`${inst.id} stderr hello on stderr`),
    );
    expect(backend.list().map((i) => i.id)).to.deep.equal([inst.id]);
  });

  it("gives an instance only the documented variables, never the poolkeeper's environment", async () => {
    process.env.FIZZ_NATS_PASSWORD = "must-not-leak";
    try {
      make();
      const inst = await backend.spawn(fake());
      const res = await request(`${inst.address}/healthz`, { dispatcher: agent });
      const { env: seen, cwd } = (await res.body.json()) as {
        env: Record<string, string>;
        cwd: string;
      };
      const dir = path.join(workDir, "instances", inst.id);
      expect(Object.keys(seen).sort()).to.deep.equal(
        [
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
        ].sort(),
      );
      expect(seen).to.include({
        HOME: dir,
        TMPDIR: dir,
        FIZZ_SPECIALIZE_TOKEN: inst.specializeToken,
      });
      expect(cwd).to.equal(dir);
    } finally {
      delete process.env.FIZZ_NATS_PASSWORD;
    }
  });

  it("refuses an environment with spec.command unless host commands are allowed, saying why", () => {
    backend = new ProcessBackend({
      workDir,
      runtimesDir: "/nonexistent-runtimes",
      python: "python3",
      spawnTimeoutMs: 5000,
      killGraceMs: 0,
      baseEnv: instanceBaseEnv({}),
      isolation: { uids: undefined, setpriv: undefined },
      allowEnvCommand: false,
      agent: instancesAgent,
      logger: silentLogger(),
    });
    expect(backend.unsupported(fake())).to.match(/spec\.command.*FIZZ_ALLOW_ENV_COMMAND=true/);
    expect(backend.unsupported(env("n", { image: "fizz/env-node" }))).to.equal(undefined);
  });

  it("as root: runs each instance as its own uid in a 0700 directory no other instance can read", async function () {
    if (process.getuid?.() !== 0) this.skip(); // only root can switch uids; CI runs as root
    make();
    const [a, b] = await Promise.all([backend.spawn(fake("a")), backend.spawn(fake("b"))]);
    expect(a.uid).to.be.a("number").and.at.least(200_000);
    expect(b.uid).to.be.a("number").and.not.equal(a.uid);
    const info = async (addr: string) =>
      (await (await request(`${addr}/healthz`, { dispatcher: agent })).body.json()) as {
        uid: number;
      };
    expect((await info(a.address)).uid).to.equal(a.uid);
    const dirA = path.join(workDir, "instances", a.id);
    const st = statSync(dirA);
    expect(st.mode & 0o777).to.equal(0o700);
    expect(st.uid).to.equal(a.uid);
    expect(statSync(path.join(workDir, "instances")).mode & 0o777).to.equal(0o711);
    await writeFile(path.join(dirA, "secret.js"), "a's code");
    const platformFile = path.join(workDir, "credentials.json");
    await writeFile(platformFile, "{}", { mode: 0o600 });
    const read = async (addr: string, p: string, dir = false) =>
      (
        (await (
          await request(`${addr}/read?path=${encodeURIComponent(p)}${dir ? "&dir" : ""}`, {
            dispatcher: agent,
          })
        ).body.json()) as { outcome: string }
      ).outcome;
    // The attacks: b reads a's code, lists the instances, reads the platform's files.
    expect(await read(b.address, path.join(dirA, "secret.js"))).to.equal("error EACCES");
    expect(await read(b.address, path.join(workDir, "instances"), true)).to.equal("error EACCES");
    expect(await read(b.address, platformFile)).to.equal("error EACCES");
    expect(await read(b.address, "/etc/shadow")).to.equal("error EACCES");
    expect(await read(a.address, path.join(dirA, "secret.js"))).to.equal("a's code");
  });

  it("as root: gives a uid back only after its instance is gone, and hands it out again last", async function () {
    if (process.getuid?.() !== 0) this.skip();
    make({}, 0);
    const lockDir = loadConfig({}).isolation.uids?.lockDir ?? "";
    const a = await backend.spawn(fake("a"));
    expect(existsSync(path.join(lockDir, String(a.uid)))).to.equal(true);
    await backend.kill(a.id, "test");
    await waitFor(() => !existsSync(path.join(workDir, "instances", a.id)));
    await waitFor(() => !existsSync(path.join(lockDir, String(a.uid))));
    const b = await backend.spawn(fake("b"));
    expect(b.uid).to.not.equal(a.uid);
  });

  /**
   * An environment whose instance reads its own session's niceness once listening (during
   * start-up) and again per request, and how to ask it.
   */
  function niceProbe() {
    const script = `
      const { readFileSync } = require("node:fs");
      const nice = () => Number(/ nice (-?\\d+)/.exec(readFileSync("/proc/self/autogroup", "utf8"))[1]);
      const atStart = nice();
      require("node:http")
        .createServer((q, s) => s.end(JSON.stringify({ atStart, now: nice() })))
        .listen(Number(process.env.PORT), process.env.HOST);
    `;
    const cmd = env("nice", { image: "acme/custom", command: [process.execPath, "-e", script] });
    const seen = async (addr: string) =>
      (await (await request(`${addr}/healthz`, { dispatcher: agent })).body.json()) as {
        atStart: number;
        now: number;
      };
    return { cmd, seen };
  }

  it("as root: a pool refill starts at a low CPU priority and is handed out at normal priority; a taken start never is low", async function () {
    if (!autogroupOn()) this.skip(); // raising it back needs root and CAP_SYS_ADMIN
    // The low-priority window outlasts any start-up here, however loaded the machine: what is
    // checked is that readiness ends it.
    make({}, 2000, 60_000);
    const { cmd, seen } = niceProbe();
    const refill = await backend.spawn(cmd);
    expect(await seen(refill.address)).to.deep.equal({ atStart: REFILL_NICE, now: 0 });
    const taken = await backend.spawn(cmd, { taken: true });
    expect(await seen(taken.address)).to.deep.equal({ atStart: 0, now: 0 });
  });

  it("as root: a refill slow to start gets its normal priority back after the low-priority window", async function () {
    if (!autogroupOn()) this.skip(); // raising it back needs root and CAP_SYS_ADMIN
    // A 1 ms window: over long before Node has even run the script.
    make({}, 2000, 1);
    const { cmd, seen } = niceProbe();
    const refill = await backend.spawn(cmd);
    expect(await seen(refill.address)).to.deep.equal({ atStart: 0, now: 0 });
  });

  it("as root without CAP_SYS_ADMIN (a default container): refills are not niced, since raising them back could be refused", async function () {
    if (!autogroupOn()) this.skip();
    const src = fileURLToPath(new URL("../src/instance-launch.ts", import.meta.url));
    const code = `const { StartPriority } = await import(${JSON.stringify(src)});
      console.log(new StartPriority().enabled);`;
    const drop = ["--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin"];
    const run = (argv: string[]) =>
      promisify(execFile)(argv[0] ?? "", argv.slice(1), { encoding: "utf8" });
    const node = [process.execPath, "--import", "tsx", "--input-type=module", "-e", code];
    expect((await run(node)).stdout.trim()).to.equal("true");
    expect((await run(["setpriv", ...drop, ...node])).stdout.trim()).to.equal("false");
  });

  it("reports an unexpected exit with its signal, and removes the work dir", async () => {
    make();
    const inst = await backend.spawn(fake());
    process.kill(inst.pid!, "SIGKILL");
    await waitFor(() => exits.length === 1);
    expect(exits[0]).to.deep.include({ id: inst.id });
    expect(exits[0]!.info).to.include({ expected: false, signal: "SIGKILL" });
    expect(exits[0]!.info.reason).to.match(/killed by SIGKILL/);
    await waitFor(() => !existsSync(path.join(workDir, "instances", inst.id)));
    expect(backend.list()).to.have.length(0);
  });

  it("kill escalates to SIGKILL after the grace period when SIGTERM is ignored, and reports it as expected", async () => {
    make({ FAKE_IGNORE_TERM: "1" }, 300);
    const inst = await backend.spawn(fake());
    const t0 = Date.now();
    expect(await backend.kill(inst.id, "test kill")).to.equal(true);
    expect(Date.now() - t0).to.be.at.least(250);
    expect(alive(inst.pid)).to.equal(false);
    expect(exits[0]!.info).to.include({ expected: true, reason: "test kill", signal: "SIGKILL" });
    expect(await backend.kill(inst.id, "again")).to.equal(false);
  });

  it("rejects a spawn whose loader exits at start with the last stderr line, and reports no exit", async () => {
    make({ FAKE_EXIT_AT_START: "1" });
    let err: unknown;
    try {
      await backend.spawn(fake());
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(FizzError);
    expect((err as FizzError).code).to.equal("INSTANCE_FAILED");
    expect((err as FizzError).message).to.match(/exited with code 3: loader crashed: boom/);
    expect(exits).to.have.length(0);
    expect(backend.list()).to.have.length(0);
  });

  it("rejects a spawn whose command does not exist", async () => {
    make();
    let err: unknown;
    try {
      await backend.spawn(env("gone", { command: ["/nonexistent/loader"] }));
    } catch (e) {
      err = e;
    }
    expect((err as FizzError).code).to.equal("INSTANCE_FAILED");
    // Started directly, the spawn fails; through setpriv, its exec does.
    expect((err as FizzError).message).to.match(
      /could not start: .*ENOENT|exited with code \d+: .*No such file/,
    );
  });

  it("close() kills every instance, including one still starting", async () => {
    make();
    const up = await backend.spawn(fake());
    const starting = backend.spawn(fake("late"));
    starting.catch(() => undefined);
    await backend.close();
    expect(alive(up.pid)).to.equal(false);
    let failed = false;
    await starting.catch(() => (failed = true));
    expect(failed).to.equal(true);
    // Directories go asynchronously after the exit.
    await waitFor(() => instanceDirs(workDir).length === 0, { what: "instance dirs removed" });
  });
});

function instanceDirs(workDir: string): string[] {
  try {
    return readdirSync(path.join(workDir, "instances"));
  } catch {
    return [];
  }
}
