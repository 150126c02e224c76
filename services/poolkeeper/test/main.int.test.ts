import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Codecs } from "@fizz/events";
import { request as natsRequest } from "@fizz/kit";
import { freePort, waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { request } from "undici";
import { Harness, alive, environment } from "./harness";

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src/main.ts");

/** The service as `npm start` runs it: its own process, stdin a pipe from the launcher. */
describe("poolkeeper main (as launched by npm start)", function () {
  this.timeout(60_000);
  const h = new Harness();
  let child: ChildProcess | undefined;
  let output = "";
  let readyPort = 0;

  /**
   * Runtime processes whose parent is `pid` (tsx may have an esbuild child too: not ours). The
   * host preparation's children are not instances either: the node build's check (prepare.mjs,
   * run again at a spawn when another poolkeeper renamed a fresh build over the one checked) and
   * python's compileall, both under runtimes/ and as the poolkeeper's uid.
   */
  const instancePidsOf = (pid: number): number[] => {
    const children = (ppid: number): string[] => {
      try {
        return execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(ppid)], {
          encoding: "utf8",
        }).split("\n");
      } catch {
        return []; // ps exits 1 when there are none
      }
    };
    const pidOf = (l: string) => Number(l.trim().split(/\s+/)[0]);
    const direct = children(pid);
    // Pool refills start through the spawner (runtimes/spawner): its children are instances too.
    const spawners = direct.filter((l) => l.includes("fizz_spawner.py")).map(pidOf);
    return [...direct.filter((l) => !l.includes("fizz_spawner.py")), ...spawners.flatMap(children)]
      .filter((l) => l.includes("/runtimes/") || l.includes("fizz-stubborn"))
      .filter((l) => !l.includes("/prepare.mjs") && !l.includes("compileall"))
      .map(pidOf)
      .filter((n) => n > 0);
  };

  async function launch(
    extraEnv: Record<string, string> = {},
    expected = 2,
  ): Promise<{ proc: ChildProcess; instancePids: number[] }> {
    const port = await freePort();
    readyPort = port;
    output = "";
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !k.startsWith("FIZZ_")) env[k] = v;
    const proc = spawn(process.execPath, ["--import", "tsx", MAIN], {
      env: {
        ...env,
        FIZZ_NATS_URL: h.nats.url,
        FIZZ_WORKDIR: h.workDir,
        FIZZ_POOLKEEPER_PORT: String(port),
        FIZZ_PARENT_STDIN: "1",
        ...extraEnv,
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    child = proc;
    proc.stdout.on("data", (d: Buffer) => (output += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (output += d.toString()));
    await waitFor(
      async () => {
        const res = await request(`http://127.0.0.1:${port}/readyz`);
        await res.body.text();
        return res.statusCode === 200;
      },
      { timeoutMs: 30_000, what: "poolkeeper /readyz" },
    );
    const instancePids = await waitFor(
      () => {
        const pids = instancePidsOf(proc.pid!);
        return pids.length === expected ? pids : undefined;
      },
      { timeoutMs: 20_000, what: `${expected} warm instances` },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; poolkeeper output:\n${output.slice(-3000)}`);
    });
    return { proc, instancePids };
  }

  before(async () => {
    await h.setUp();
    // One of each runtime: both must exit when the poolkeeper is SIGKILLed.
    h.environments.set("node", environment("node", "fizz/env-node", 1));
    h.environments.set("python", environment("python", "fizz/env-python", 1));
    h.answerRegistry();
  });
  // A failed test must not orphan instances: stop the poolkeeper the graceful way first.
  afterEach(async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once("exit", r));
    c.kill("SIGTERM");
    const hard = setTimeout(() => c.kill("SIGKILL"), 15_000);
    await gone;
    clearTimeout(hard);
  });
  after(() => h.tearDown());

  it("logs a function's prints at debug level (fizz fn logs has them) with instance and function, then stops with its instances when stdin closes", async () => {
    const { proc, instancePids } = await launch({ FIZZ_LOG_LEVEL: "debug" });
    const code = await h.putCode(
      "say.js",
      "module.exports = async () => { console.log('printed by the function'); return 'ok'; };\n",
    );
    const { instance } = await natsRequest(
      h.nc,
      h.s.poolkeeperSpecialize,
      Codecs.poolkeeperSpecialize,
      {
        environment: { namespace: "default", name: "node" },
        function: { namespace: "default", name: "say", revision: 1 },
        code,
        concurrency: 1,
      },
      { sender: "test", timeoutMs: 20_000 },
    );
    const res = await request(instance.address, { headers: { "x-fizz-instance": instance.id } });
    expect(await res.body.text()).to.equal("ok");
    const line = await waitFor(() =>
      output
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === "printed by the function"),
    );
    expect(line).to.include({
      level: 20,
      instance: instance.id,
      function: "default/say",
      service: "poolkeeper",
    });

    const all = [...new Set([...instancePids, ...instancePidsOf(proc.pid!)])];
    const exited = new Promise<number | null>((r) => proc.once("exit", (c) => r(c)));
    proc.stdin!.end();
    expect(await exited).to.equal(0);
    expect(all.filter(alive)).to.deep.equal([]);
  });

  it("never connects to Redis, even with a FIZZ_REDIS_URL in its environment", async () => {
    // A listener standing where Redis would be: any connection attempt is counted.
    let connections = 0;
    const fakeRedis = net.createServer((sock) => {
      connections++;
      sock.destroy();
    });
    await new Promise<void>((r) => fakeRedis.listen(0, "127.0.0.1", r));
    try {
      const port = (fakeRedis.address() as net.AddressInfo).port;
      await launch({
        FIZZ_REDIS_URL: `redis://127.0.0.1:${port}`,
        FIZZ_REDIS_USER: "poolkeeper",
        FIZZ_REDIS_PASSWORD: "not-used",
      });
      const code = await h.putCode("r.js", "module.exports = async () => 'no redis';\n");
      const { instance } = await natsRequest(
        h.nc,
        h.s.poolkeeperSpecialize,
        Codecs.poolkeeperSpecialize,
        {
          environment: { namespace: "default", name: "node" },
          function: { namespace: "default", name: "no-redis", revision: 1 },
          code,
          concurrency: 1,
        },
        { sender: "test", timeoutMs: 20_000 },
      );
      const res = await request(instance.address, {
        headers: { "x-fizz-instance": instance.id },
      });
      expect(await res.body.text()).to.equal("no redis");
      const ready = await request(`http://127.0.0.1:${readyPort}/readyz`);
      expect(await ready.body.json()).to.not.have.nested.property("checks.redis");
      expect(connections).to.equal(0);
    } finally {
      fakeRedis.close();
    }
  });

  it("never logs a secret's value, even at trace level and when the function fails to load", async () => {
    await launch({ FIZZ_LOG_LEVEL: "trace" });
    const value = "very-secret-value-4711";
    h.secrets.set("default/api-key", { token: Buffer.from(value).toString("base64") });
    const specialize = (name: string, source: string) =>
      h.specializeNode(name, source, {
        secrets: ["api-key"],
        env: { ALSO_SECRET: value },
        concurrency: 1,
      });
    await specialize("uses-secret", "module.exports = async () => 'ok';\n");
    const failed = await specialize("broken", "module.exports = (;\n").catch((e: Error) => e);
    expect(failed).to.be.instanceOf(Error);
    await new Promise((r) => setTimeout(r, 300));
    expect(output).to.include("specialize"); // trace/debug lines were written
    for (const form of [value, Buffer.from(value).toString("base64")])
      expect(output, "a secret value in the poolkeeper's log").to.not.include(form);
  });

  it("as root, runs its instances as unprivileged uids", async function () {
    if (process.getuid?.() !== 0) this.skip(); // only root can give instances other uids
    const { instancePids } = await launch();
    for (const pid of instancePids) {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
      expect(uid, status).to.be.at.least(200_000);
      expect(status).to.match(/^NoNewPrivs:\s+1$/m);
      expect(status).to.match(/^CapEff:\s+0+$/m);
    }
  });

  it("leaves no instance behind when it is killed with SIGKILL, even one that ignores its stdin (parent-death signal)", async () => {
    // A loader that never reads stdin and ignores SIGTERM: only the kernel's pdeathsig stops it.
    const stubborn = [
      process.execPath,
      "-e",
      "process.title='fizz-stubborn';process.on('SIGTERM',()=>{});require('http').createServer((q,s)=>s.end('{\"status\":\"ok\",\"state\":\"warm\"}')).listen(+process.env.PORT,process.env.HOST)",
      "fizz-stubborn",
    ];
    h.environments.set("stubborn", {
      ...environment("stubborn", "acme/stubborn", 1),
      spec: { image: "acme/stubborn", poolSize: 1, command: stubborn },
    });
    try {
      const { proc, instancePids } = await launch({ FIZZ_ALLOW_ENV_COMMAND: "true" }, 3);
      proc.kill("SIGKILL");
      try {
        await waitFor(() => instancePids.every((p) => !alive(p)), {
          timeoutMs: 10_000,
          what: "orphaned instances to exit",
        });
      } finally {
        for (const p of instancePids.filter(alive)) process.kill(p, "SIGKILL");
      }
    } finally {
      h.environments.delete("stubborn");
    }
  });

  it("leaves no instance behind when it is killed with SIGKILL (the runtimes exit when their stdin closes)", async () => {
    const { proc, instancePids } = await launch();
    proc.kill("SIGKILL");
    try {
      await waitFor(() => instancePids.every((p) => !alive(p)), {
        timeoutMs: 10_000,
        what: "orphaned instances to exit",
      });
    } finally {
      for (const p of instancePids.filter(alive)) process.kill(p, "SIGKILL");
    }
  });

  it("removes at start the build directories a dead poolkeeper left in its work directory", async () => {
    // What a build killed with its poolkeeper leaves (FIZZ_BUILD_DIR defaults to <workdir>/builds).
    const stale = path.join(h.workDir, "builds", "fn-1-deadbeef");
    mkdirSync(path.join(stale, "src", "node_modules"), { recursive: true });
    writeFileSync(path.join(stale, "src", "node_modules", "left.js"), "left behind\n");
    const { proc } = await launch();
    await waitFor(() => !existsSync(stale), { timeoutMs: 20_000, what: "the stale build removed" });
    expect(existsSync(path.join(h.workDir, "builds")), "the builds directory itself").to.equal(
      true,
    );
    proc.kill("SIGTERM");
    await new Promise((r) => proc.once("exit", r));
  });
});
