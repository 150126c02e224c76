import { expect } from "chai";
import { once } from "node:events";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { SpawnerError, type Spawner } from "../src/spawner-client";
import { alive, PYTHON, readAll, startRawSpawner, useSpawnerHarness } from "./spawner-harness";

const env = { PATH: "/usr/bin:/bin", LANG: "C.UTF-8" };

async function echo(sp: Spawner, word: string): Promise<string> {
  const child = await sp.spawn({
    file: "echo",
    args: [word],
    cwd: "/",
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  return readAll(child.stdout);
}

/**
 * What the spawner must survive, or refuse up front, without hanging or failing every refill (and
 * without taking down the instances it started: they die with it, by their parent-death signal).
 */
describe("spawner robustness", function () {
  this.timeout(30_000);
  const h = useSpawnerHarness("fizz-spawner-r-");
  let dir: string;
  beforeEach(() => {
    dir = h.dir;
  });
  const start = (sockDir?: string): Promise<Spawner> =>
    h.start({ log: () => undefined, ...(sockDir === undefined ? {} : { sockDir }) });

  it("two spawners sharing a socket directory (two backends on one work dir) each get their own children's streams, also after the other closes", async () => {
    const a = await start();
    const b = await start();
    // Before: b's start removed a's socket and listened on the same path, so a's spawner handed
    // a's children connections to b, which dropped them: a's spawn never resolved.
    expect(await echo(a, "a")).to.equal("a\n");
    expect(await echo(b, "b")).to.equal("b\n");
    await a.close();
    // Before: a's close removed the path, now b's socket: b's spawns failed (connect: ENOENT).
    expect(await echo(b, "b2")).to.equal("b2\n");
  });

  it("refuses to start when its socket path would not fit a Unix socket address (Node would bind a truncated path)", async () => {
    const long = path.join(dir, "d".repeat(100));
    mkdirSync(long);
    let err: unknown;
    await start(path.join(long, "sock")).catch((e: unknown) => (err = e));
    // Before: it started, and every spawn failed at the spawner's connect ("path too long"):
    // the backend's refills failed instead of falling back to child_process.spawn.
    expect(err).to.be.instanceOf(SpawnerError);
    expect((err as SpawnerError).code).to.equal("SPAWNER_FAILED");
    // Nor a socket bound under the cut name (here in `dir`, a name of d's).
    expect(readdirSync(dir)).to.deep.equal([path.basename(long)]);
    expect(readdirSync(path.join(long, "sock"))).to.deep.equal([]);
  });

  it("ignores SIGINT and SIGTERM (a terminal's Ctrl-C, a group's or cgroup's stop): its children are not killed with it, and the poolkeeper stops them gracefully", async () => {
    const sp = await start();
    const sleeper = await sp.spawn({
      file: "sleep",
      args: ["300"],
      cwd: "/",
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    // Pending at the spawner when kill returns: before, it died of them before reading on, and
    // its children with it (SIGKILL, parent-death signal), in the middle of the poolkeeper's drain.
    process.kill(sp.pid!, "SIGINT");
    process.kill(sp.pid!, "SIGTERM");
    process.kill(sp.pid!, "SIGHUP");
    expect(await echo(sp, "still")).to.equal("still\n");
    expect(sp.usable).to.equal(true);
    expect(sleeper.exitCode).to.equal(null);
    expect(sleeper.signalCode).to.equal(null);
    // Its children start with those signals at their defaults again (exec keeps ignored ones).
    const grep = await sp.spawn({
      file: "grep",
      args: ["^SigIgn", "/proc/self/status"],
      cwd: "/",
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    expect(await readAll(grep.stdout)).to.equal("SigIgn:\t0000000000000000\n");
    expect(sleeper.kill("SIGTERM")).to.equal(true);
    expect(await once(sleeper, "exit")).to.deep.equal([null, "SIGTERM"]);
  });

  it("a spawn that runs out of descriptors in the spawner is that spawn's error; the spawner and its children live on", async () => {
    const sp = await start();
    const sleeper = await sp.spawn({
      file: "sleep",
      args: ["300"],
      cwd: "/",
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    // Room for exactly the three stdio connections of the next spawn, none for its error pipe.
    const open = new Set(readdirSync(`/proc/${sp.pid!}/fd`).map(Number));
    const free: number[] = [];
    for (let fd = 0; free.length < 3; fd++) if (!open.has(fd)) free.push(fd);
    const limit = free[2]! + 1;
    // The soft limit only: raising a hard one back needs CAP_SYS_RESOURCE (not in a container).
    const nofile = (n: number | string) =>
      execFileSync("prlimit", [`--pid=${sp.pid!}`, `--nofile=${n}:`]);
    const limits = readFileSync(`/proc/${sp.pid!}/limits`, "latin1");
    const hard = /^Max open files\s+\S+\s+(\S+)/m.exec(limits)![1]!;
    nofile(limit);
    const failed = await sp.spawn({
      file: "true",
      args: [],
      cwd: "/",
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const [err] = (await once(failed, "error")) as [SpawnerError];
    // Before: os.pipe2's EMFILE escaped the loop and the spawner died, SIGKILLing every child.
    expect(err.code).to.equal("EMFILE");
    nofile(hard);
    expect(sp.usable).to.equal(true);
    expect(await echo(sp, "after")).to.equal("after\n");
    expect(sleeper.exitCode).to.equal(null);
    expect(sleeper.signalCode).to.equal(null);
  });

  it("an exec failure is reported as such whichever descriptor slot its error pipe would have had", async () => {
    const sp = await start();
    // One connection at slot k of ten: the spawner's own few descriptors, that connection and the
    // error pipe sit below 10, so for some k the child's dup2 onto slot k hit the error pipe.
    // Before: that closed it early ("spawned" before the exec), and the exec's error went to the
    // child's stream as output, its exit 127 reported as the command's.
    for (let k = 3; k < 10; k++) {
      const stdio = Array.from({ length: 10 }, (_, i) => (i === k ? "pipe" : "ignore")) as Array<
        "pipe" | "ignore"
      >;
      const child = await sp.spawn({ file: "/nonexistent/bin", args: [], cwd: "/", env, stdio });
      expect(child.pid, `slot ${k}`).to.equal(undefined);
      const [err] = (await once(child, "error")) as [SpawnerError];
      expect([err.code, err.syscall], `slot ${k}`).to.deep.equal(["ENOENT", "exec"]);
    }
  });

  it("when the poolkeeper dies, even by SIGKILL, the spawner and the instances it started die too", async () => {
    // A stand-in poolkeeper: a Node process with the client, one child as an instance uid.
    const client = fileURLToPath(new URL("../src/spawner-client.ts", import.meta.url));
    const script = path.join(dir, "keeper.mts");
    writeFileSync(
      script,
      `import { startSpawner } from ${JSON.stringify(client)};
const sp = await startSpawner({ python: ${JSON.stringify(PYTHON)}, dir: process.argv[2] });
const c = await sp.spawn({ file: "sleep", args: ["300"], cwd: "/", env: { PATH: "/usr/bin:/bin" },
  ${process.getuid?.() === 0 ? "uid: 290000 + (process.pid % 5000)," : ""} stdio: ["ignore", "ignore", "ignore"] });
console.log(JSON.stringify([sp.pid, c.pid]));
`,
    );
    const keeper = spawn(process.execPath, ["--import", "tsx", script, path.join(dir, "sock")], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const [line] = (await once(createInterface({ input: keeper.stdout }), "line")) as [string];
    const pids = JSON.parse(line) as number[];
    expect(pids.every(alive)).to.equal(true);
    keeper.kill("SIGKILL");
    // The test's timeout is the bound: one the parent-death signals missed never goes.
    while (pids.some(alive)) await new Promise((r) => setTimeout(r, 20));
  });

  it("a request with an id that is not an integer is refused and the spawner serves on (no exception out of its loop)", async () => {
    // Its own protocol, on its stdin, as the client speaks it (it never sends such an id).
    const raw = startRawSpawner(path.join(dir, "none.sock"));
    const ok = { op: "spawn", token: "0".repeat(32), file: "true", args: ["true"], env, cwd: "/" };
    const stdio = ["ignore", "ignore", "ignore"];
    for (const msg of [
      { op: "kill", id: [1], signal: 9 }, // before: TypeError (unhashable), the spawner died
      { ...ok, id: { a: 1 }, stdio }, // before: the same, after its fork
      { ...ok, id: 7, stdio },
    ])
      raw.send(msg);
    // Until the last request's exit is reported, or the spawner's output ends (it died).
    await raw.seen("exit", 7);
    expect(raw.events.filter((e) => e.ev !== "hello").map((e) => [e.ev, e.id])).to.deep.equal([
      ["error", { a: 1 }],
      ["spawned", 7],
      ["exit", 7],
    ]);
    expect(await raw.end()).to.deep.equal([0, null]); // the poolkeeper's end: it exits
  });
});
