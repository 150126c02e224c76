import { expect } from "chai";
import { once } from "node:events";
import { chmodSync, chownSync, mkdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import type { ChildProcess } from "node:child_process";
import {
  SpawnerError,
  type ChildLike,
  type Spawner,
  type SpawnedChild,
} from "../src/spawner-client";
import { alive, PYTHON, readAll, useSpawnerHarness } from "./spawner-harness";

// The process backend can hold either kind of child (compile-time check).
const _both: ChildLike[] = [{} as ChildProcess, {} as SpawnedChild];

const isRoot = process.getuid?.() === 0;
/** Far above the pool's default range (200000+10000) and the uid tests'. */
const UID = 290_000 + (process.pid % 5_000);

/** What the child sees of itself, as JSON on stdout; then "ready" on fd 3, a stderr line, exit 7. */
const PROBE = `
import ctypes, json, os, resource, sys
libc = ctypes.CDLL(None)
sig = ctypes.c_int(0)
libc.prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
print(json.dumps({
  "uid": status["Uid"].split(), "gid": status["Gid"].split(), "groups": status["Groups"].strip(),
  "nnp": status["NoNewPrivs"].strip(), "capinh": status["CapInh"].strip(),
  "capeff": status["CapEff"].strip(), "pdeathsig": sig.value, "sid": os.getsid(0),
  "pid": os.getpid(), "fds": fds, "env": dict(os.environ), "cwd": os.getcwd(),
  "nproc": resource.getrlimit(resource.RLIMIT_NPROC)[0],
}), flush=True)
os.write(3, b"ready\\n"); os.close(3)
sys.stderr.write("last words\\n")
sys.exit(7)
`;

function exitOf(child: SpawnedChild): Promise<[number | null, string | null]> {
  return once(child, "exit") as Promise<[number | null, string | null]>;
}

describe("spawner (fizz_spawner.py and its client)", function () {
  const h = useSpawnerHarness("fizz-spawner-");
  let dir: string;
  let spawner: Spawner;
  const env = { PATH: "/usr/bin:/bin", LANG: "C.UTF-8", FIZZ_X: "a b=c", EMPTY: "" };

  beforeEach(async () => {
    dir = h.dir;
    spawner = await h.start();
  });

  it("starts a child as the uid with no groups or capabilities, no_new_privs, a parent-death signal, its own session, only fds 0-3 and exactly the env given", async function () {
    if (!isRoot) this.skip(); // switching uids needs root, as the process backend's isolation does
    // Its own 0700 directory, reachable through ours (mkdtemp's is 0700), as an instance's is.
    chmodSync(dir, 0o711);
    const cwd = path.join(dir, "home");
    mkdirSync(cwd, { mode: 0o700 });
    chownSync(cwd, UID, UID);
    const child = await spawner.spawn({
      file: PYTHON,
      args: ["-c", PROBE],
      cwd,
      env,
      uid: UID,
      nproc: 77,
      stdio: ["pipe", "pipe", "pipe", "pipe"],
    });
    child.once("error", (e) => expect.fail(String(e)));
    expect(child.pid).to.be.a("number");
    const exit = exitOf(child);
    const [out, err, ready] = await Promise.all([
      readAll(child.stdout),
      readAll(child.stderr),
      readAll(child.stdio[3]),
    ]);
    const seen = JSON.parse(out) as Record<string, unknown>;
    const u = String(UID);
    expect(seen.uid).to.deep.equal([u, u, u, u]);
    expect(seen.gid).to.deep.equal([u, u, u, u]);
    expect(seen.groups).to.equal("");
    expect(seen.nnp).to.equal("1");
    expect(seen.capinh).to.equal("0000000000000000");
    expect(seen.capeff).to.equal("0000000000000000");
    expect(seen.pdeathsig).to.equal(9);
    expect(seen.sid).to.equal(child.pid);
    expect(seen.pid).to.equal(child.pid);
    // 0-3, and the directory listing's own descriptor (the lowest free one).
    expect(seen.fds).to.deep.equal([0, 1, 2, 3, 4]);
    expect(seen.env).to.deep.equal(env);
    expect(seen.cwd).to.equal(cwd);
    expect(seen.nproc).to.equal(77);
    expect(ready).to.equal("ready\n");
    expect(err).to.equal("last words\n");
    expect(await exit).to.deep.equal([7, null]);
    expect(child.exitCode).to.equal(7);
    expect(child.signalCode).to.equal(null);
  });

  it("reports exit codes and signals, and kill() reaches the child's whole process group", async () => {
    // grep's own dispositions: the spawner (Python) ignores SIGPIPE, and exec keeps ignored ones.
    const ok = await spawner.spawn({
      file: "grep",
      args: ["^SigIgn", "/proc/self/status"],
      cwd: "/",
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const exited = exitOf(ok);
    expect(await readAll(ok.stdout)).to.equal("SigIgn:\t0000000000000000\n");
    expect(await exited).to.deep.equal([0, null]);
    // The grandchild shares the stdout socket: 'close' comes only once it is gone too.
    const child = await spawner.spawn({
      file: "sh",
      args: ["-c", "sleep 300 & echo started; wait"],
      cwd: "/",
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const closed = once(child, "close");
    child.stdout!.setEncoding("utf8");
    const [line] = (await once(child.stdout!, "data")) as [string];
    expect(line).to.equal("started\n");
    expect(child.kill("SIGTERM")).to.equal(true);
    expect(await exitOf(child)).to.deep.equal([null, "SIGTERM"]);
    await closed; // the grandchild (sleep) died with the group, or its stdout would stay open
    expect(child.kill("SIGKILL")).to.equal(false); // reaped: refused
  });

  it("spawns in flight together each get their own streams", async () => {
    // Read as soon as each resolves, as the backend does: like ChildProcess, a child drains output
    // nobody reads once it has exited.
    const seen = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const c = await spawner.spawn({
          file: "sh",
          args: ["-c", `echo out${i}; echo err${i} >&2`],
          cwd: "/",
          env,
          stdio: ["pipe", "pipe", "pipe"],
        });
        return Promise.all([readAll(c.stdout), readAll(c.stderr)]);
      }),
    );
    expect(seen).to.deep.equal(seen.map((_, i) => [`out${i}\n`, `err${i}\n`]));
  });

  it("drops a connection with a wrong token; it never becomes a child's stream", async () => {
    const forged = net.connect(spawner.socketPath);
    forged.on("error", () => undefined);
    forged.write(`${"0".repeat(32)} 1\nforged output\n`);
    await once(forged, "close"); // the poolkeeper's side closed it
    const child = await spawner.spawn({
      file: "echo",
      args: ["real"],
      cwd: "/",
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    expect(await readAll(child.stdout)).to.equal("real\n");
    expect(child.stdin).to.equal(null);
  });

  it("a failed set-up is a spawn error and nothing of the command runs", async () => {
    const marker = path.join(dir, "ran");
    const attempts: Array<[Partial<Parameters<Spawner["spawn"]>[0]>, string, string]> = [
      [{ cwd: path.join(dir, "missing") }, "ENOENT", "chdir"],
      [{ file: "/nonexistent/bin" }, "ENOENT", "exec"],
      [{ uid: -1 }, "EINVAL", "request"], // -1 is setresuid's "unchanged": it would stay root
      [{ uid: 4294967295 }, "EINVAL", "request"],
    ];
    for (const [change, code, stage] of attempts) {
      const child = await spawner.spawn({
        file: "sh",
        args: ["-c", `touch ${marker}`],
        cwd: "/",
        env,
        stdio: ["pipe", "pipe", "pipe", "pipe"],
        ...change,
      });
      const [err] = (await once(child, "error")) as [SpawnerError];
      expect(err).to.be.instanceOf(SpawnerError);
      expect([err.code, err.syscall]).to.deep.equal([code, stage]);
      expect(child.pid).to.equal(undefined);
    }
    // The spawner still serves, and the marker shows only this one ran.
    const child = await spawner.spawn({
      file: "sh",
      args: ["-c", `test -e ${marker}`],
      cwd: "/",
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const closed = once(child, "close"); // no output at all: its streams may close before exec's report
    expect(await exitOf(child)).to.deep.equal([1, null]);
    await closed;
  });

  it("when the spawner dies its children die too, are reported exited, and spawn() rejects", async () => {
    const child = await spawner.spawn({
      file: "sleep",
      args: ["300"],
      cwd: "/",
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const pid = child.pid!;
    const closed = once(child, "close");
    process.kill(spawner.pid!, "SIGKILL");
    expect(await exitOf(child)).to.deep.equal([null, "SIGKILL"]);
    // Its stdout closes only when the process is gone (parent-death signal).
    await closed;
    // Its descriptors close a moment before it is a zombie: wait for that (the test's timeout
    // is the bound; a child the parent-death signal missed never gets there).
    while (alive(pid)) await new Promise((r) => setTimeout(r, 10));
    expect(spawner.usable).to.equal(false);
    let err: unknown;
    await spawner
      .spawn({ file: "true", args: [], cwd: "/", env, stdio: ["pipe", "pipe", "pipe"] })
      .catch((e: unknown) => (err = e));
    expect((err as SpawnerError).code).to.equal("SPAWNER_UNAVAILABLE");
  });
});
