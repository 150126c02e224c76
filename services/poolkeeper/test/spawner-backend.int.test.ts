import { spawn } from "node:child_process";
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { silentLogger, type Logger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { Agent, request } from "undici";
import { instanceAgent } from "../src/instance-http";
import type { ExitInfo } from "../src/backend";
import { DEFAULT_RUNTIMES_DIR, loadConfig } from "../src/config";
import { autogroupNice, REFILL_NICE, StartPriority } from "../src/instance-launch";
import { instanceBaseEnv } from "../src/isolation";
import { ProcessBackend } from "../src/process-backend";
import { env } from "./fake-backend";
import { capturingLogger } from "./fork-bomb";

/** The backend's client for its instances; the test's own requests go over undici. */
const instancesAgent = instanceAgent();

const FIXTURE = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "fixtures/fake-runtime.mjs",
);
const isRoot = process.getuid?.() === 0;

/** A /proc/<pid>/status field. */
function status(pid: number, field: string): string {
  const m = new RegExp(`^${field}:[ \\t]*(.*)$`, "m").exec(
    readFileSync(`/proc/${pid}/status`, "latin1"),
  );
  return m?.[1] ?? "";
}
/** Live processes whose real uid is `uid`. */
function pidsOf(uid: number): number[] {
  return readdirSync("/proc")
    .filter((n) => /^[0-9]+$/.test(n))
    .map(Number)
    .filter((pid) => {
      try {
        return status(pid, "Uid").split(/\s+/)[0] === String(uid) && alive(pid);
      } catch {
        return false;
      }
    });
}
function alive(pid: number): boolean {
  try {
    return !/^[ZX]/.test(status(pid, "State"));
  } catch {
    return false;
  }
}
function parentCmdline(pid: number): string {
  const ppid = Number(status(pid, "PPid"));
  return readFileSync(`/proc/${ppid}/cmdline`, "latin1").replace(/\0/g, " ");
}

/**
 * Pool refills of instances with their own uid start through the spawner
 * (runtimes/spawner/fizz_spawner.py), taken starts through child_process.spawn; both get the same
 * uid, no_new_privs, process limit and parent-death chain, and without the spawner refills fall
 * back to child_process.spawn.
 */
describe("process backend: refills through the spawner", function () {
  this.timeout(60_000);
  let workDir: string;
  let agent: Agent;
  let backend: ProcessBackend | undefined;
  let exits: Array<{ id: string; info: ExitInfo }>;
  const uidBase = 262_000 + Math.floor(Math.random() * 900);
  const fake = env("fake", { image: "acme/custom", command: [process.execPath, FIXTURE] });

  function make(
    opts: {
      python?: string;
      refillLowPriorityMs?: number;
      spawnTimeoutMs?: number;
      logger?: Logger;
      /** The interpreter of the clean-up's kill pass when the spawner does not run it. */
      passPython?: string;
    } = {},
  ): ProcessBackend {
    const { python = "/usr/bin/python3", refillLowPriorityMs, spawnTimeoutMs = 20_000 } = opts;
    const config = loadConfig({}).isolation;
    const isolation =
      opts.passPython && config.shieldedKill
        ? { ...config, shieldedKill: { ...config.shieldedKill, python: opts.passPython } }
        : config;
    backend = new ProcessBackend({
      workDir,
      // Only the spawner of the real runtimes: no runtime to prepare (the node build, compileall).
      runtimesDir: path.join(workDir, "runtimes"),
      python,
      spawnTimeoutMs,
      killGraceMs: 200,
      baseEnv: instanceBaseEnv({}),
      isolation: {
        ...isolation,
        uids: {
          base: uidBase,
          count: 4,
          lockDir: path.join(workDir, "locks"),
        },
        nproc: { limit: 64, prlimit: isolation.nproc?.prlimit },
      },
      allowEnvCommand: true,
      agent: instancesAgent,
      logger: opts.logger ?? silentLogger(),
      ...(refillLowPriorityMs !== undefined ? { refillLowPriorityMs } : {}),
    });
    backend.onExit((i, info) => exits.push({ id: i.id, info }));
    return backend;
  }

  beforeEach(async function () {
    if (!isRoot || !existsSync("/usr/bin/python3") || !loadConfig({}).isolation.setpriv)
      this.skip(); // own uids need root; the spawner needs Debian's python3
    workDir = await mkdtemp(path.join(tmpdir(), "fizz-spb-"));
    // The spawner is its script and the fizzspawn package beside it.
    await cp(
      path.join(DEFAULT_RUNTIMES_DIR, "spawner"),
      path.join(workDir, "runtimes", "spawner"),
      { recursive: true },
    );
    agent = new Agent();
    exits = [];
  });
  afterEach(async () => {
    await backend?.close();
    backend = undefined;
    await agent?.close();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it("starts a refill through the spawner, as its uid with no_new_privs and the process limit", async () => {
    const b = make();
    const refill = await b.spawn(fake);
    const pid = refill.pid!;
    expect(parentCmdline(pid)).to.include("fizz_spawner.py");
    expect(status(pid, "Uid").split(/\s+/)).to.deep.equal(Array(4).fill(String(refill.uid)));
    expect(status(pid, "Groups")).to.equal("");
    expect(status(pid, "NoNewPrivs")).to.equal("1");
    expect(readFileSync(`/proc/${pid}/limits`, "latin1")).to.match(/^Max processes\s+64\s+64\s/m);
    const res = await request(`${refill.address}/healthz`, { dispatcher: agent });
    expect(res.statusCode).to.equal(200);
    await res.body.dump();
    // A taken start does not go through it (measured: no sooner ready, bursts slower).
    const taken = await b.spawn(fake, { taken: true });
    expect(Number(status(taken.pid!, "PPid"))).to.equal(process.pid);
    expect(status(taken.pid!, "NoNewPrivs")).to.equal("1");
  });

  it("reports a refill's death and kills it through the spawner", async () => {
    const b = make();
    const a = await b.spawn(fake);
    process.kill(a.pid!, "SIGKILL");
    await waitFor(() => exits.some((e) => e.id === a.id), { what: "the exit reported" });
    expect(exits.find((e) => e.id === a.id)?.info.signal).to.equal("SIGKILL");
    const c = await b.spawn(fake);
    expect(await b.kill(c.id, "test")).to.equal(true);
    expect(
      existsSync(`/proc/${c.pid!}`) && status(c.pid!, "State").startsWith("Z") === false,
    ).to.equal(false);
  });

  it("an instance's clean-up kills what its uid left with a pass the spawner forks, starting no interpreter of its own", async () => {
    // An interpreter that records being started and fails: the poolkeeper's own pass would show.
    const passPython = path.join(workDir, "python3");
    writeFileSync(passPython, `#!/bin/sh\necho "$@" >> ${workDir}/interpreter\nexit 1\n`);
    chmodSync(passPython, 0o755);
    const b = make({ passPython });
    const setpriv = loadConfig({}).isolation.setpriv!;
    const daemons: number[] = [];
    for (const taken of [false, true]) {
      const inst = await b.spawn(fake, { taken });
      // What a function leaves behind: a process of its uid in a session of its own.
      spawn(
        setpriv,
        [
          `--reuid=${inst.uid}`,
          `--regid=${inst.uid}`,
          "--clear-groups",
          "--",
          "setsid",
          "sleep",
          "60",
        ],
        {
          stdio: "ignore",
        },
      ).unref();
      const pid = await waitFor(() => pidsOf(inst.uid!).find((p) => p !== inst.pid), {
        what: "the left-over process",
      });
      daemons.push(pid);
      expect(await b.kill(inst.id, "test")).to.equal(true);
    }
    await b.close(); // waits for the clean-ups
    backend = undefined;
    for (const pid of daemons) expect(alive(pid), `left-over ${pid}`).to.equal(false);
    expect(existsSync(path.join(workDir, "interpreter")), "an interpreter was started").to.equal(
      false,
    );
  });

  it("a refill is handed out only once the spawner has raised its priority back: spawn() waits for the spawner's answer to the restore", async function () {
    if (!new StartPriority().enabled) this.skip(); // niced only as root with CAP_SYS_ADMIN
    // Stays lowered until readiness restores it (the window outlasts the test).
    const b = make({ refillLowPriorityMs: 60_000 });
    // Starts, says so, and listens only once told to: the spawner is stopped in between.
    const script = `
      const fs = require("node:fs");
      const dir = process.env.FIZZ_WORKDIR;
      fs.writeFileSync(dir + "/started", String(process.pid));
      const go = () => fs.existsSync(dir + "/go") ? listen() : setTimeout(go, 10);
      const listen = () => require("node:http")
        .createServer((q, s) => { fs.writeFileSync(dir + "/served", ""); s.end("{}"); })
        .listen(Number(process.env.PORT), process.env.HOST);
      go();
    `;
    const probe = env("probe", { image: "acme/custom", command: [process.execPath, "-e", script] });
    const spawning = b.spawn(probe).then((i) => autogroupNice(i.pid!));
    const instances = path.join(workDir, "instances");
    let dir = "";
    await waitFor(
      () =>
        (dir =
          readdirSync(instances)
            .map((n) => path.join(instances, n))
            .find((d) => existsSync(path.join(d, "started"))) ?? ""),
      { what: "the probe started" },
    );
    const pid = Number(readFileSync(path.join(dir, "started"), "utf8"));
    await waitFor(() => autogroupNice(pid) === REFILL_NICE, { what: "the refill lowered" });
    const spawnerPid = Number(status(pid, "PPid"));
    expect(parentCmdline(pid)).to.include("fizz_spawner.py");
    process.kill(spawnerPid, "SIGSTOP");
    try {
      writeFileSync(path.join(dir, "go"), "");
      await waitFor(() => existsSync(path.join(dir, "served")), { what: "its readiness answered" });
      // The restore is sent now, and waits in the stopped spawner's stdin.
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      process.kill(spawnerPid, "SIGCONT");
    }
    expect(await spawning, "its priority when spawn() returned it").to.equal(0);
  });

  it("a refill whose spawn never completes fails at the spawn timeout: its child is killed, its uid given back and its directory removed", async () => {
    // The real spawner, but descriptor 1's connection names no spawn: the client drops it, as one
    // lost before its header was read, and the spawn cannot complete.
    writeFileSync(
      path.join(workDir, "runtimes", "spawner", "fizz_spawner.py"),
      `import importlib.util, socket, sys
sys.dont_write_bytecode = True
spec = importlib.util.spec_from_file_location("real", ${JSON.stringify(path.join(DEFAULT_RUNTIMES_DIR, "spawner", "fizz_spawner.py"))})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
class Sock(socket.socket):
    def sendall(self, data, *a):
        return super().sendall(b"0" * 32 + b" 1\\n" if data.endswith(b" 1\\n") else data, *a)
class Shim:
    AF_UNIX, SOCK_STREAM, socket = socket.AF_UNIX, socket.SOCK_STREAM, Sock
mod.server.socket = Shim
mod.server.main(sys.argv)
`,
    );
    const b = make({ spawnTimeoutMs: 1_000 });
    const lockDir = path.join(workDir, "locks");
    const err = await b.spawn(fake).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    );
    expect(err?.code).to.equal("INSTANCE_FAILED");
    expect(err?.message).to.match(/did not complete within 1000 ms/);
    await waitFor(() => readdirSync(lockDir).length === 0, { what: "the uid given back" });
    expect(readdirSync(path.join(workDir, "instances"))).to.deep.equal([]);
    const uids = new Set(Array.from({ length: 4 }, (_, i) => String(uidBase + i)));
    const left = readdirSync("/proc")
      .filter((n) => /^\d+$/.test(n))
      .filter((n) => {
        try {
          return uids.has(status(Number(n), "Uid").split(/\s+/)[0] ?? "");
        } catch {
          return false; // gone meanwhile
        }
      });
    expect(left, "processes of the pool's uids").to.deep.equal([]);
  });

  it("falls back to child_process.spawn when the spawner cannot start", async () => {
    const b = make({ python: "/nonexistent/python3" });
    const refill = await b.spawn(fake);
    expect(Number(status(refill.pid!, "PPid"))).to.equal(process.pid);
    expect(readFileSync(`/proc/${refill.pid!}/limits`, "latin1")).to.match(
      /^Max processes\s+64\s+64\s/m,
    );
  });

  it("falls back to child_process.spawn when the spawner's package is missing, and logs which file", async () => {
    await rm(path.join(workDir, "runtimes", "spawner", "fizzspawn"), { recursive: true });
    const { logger, lines } = capturingLogger();
    const b = make({ logger });
    const refill = await b.spawn(fake);
    expect(Number(status(refill.pid!, "PPid"))).to.equal(process.pid);
    const log = lines.join("");
    expect(log).to.match(/No such file or directory: [^"]*fizzspawn\/__init__\.py/);
    expect(log).to.include("the spawner did not start");
  });
});
