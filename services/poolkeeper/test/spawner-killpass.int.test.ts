import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import {
  chmodSync,
  existsSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { killUid } from "../src/uid-cleanup";
import { SPAWNER_SCRIPT } from "../src/spawner-client";
import { PYTHON, startRawSpawner, useSpawnerHarness } from "./spawner-harness";
import {
  alive,
  asUid,
  childrenOf,
  isRoot,
  pidsOfUid,
  SETPRIV,
  sleep,
  until,
} from "./process-helpers";

const RUID = 257_999;

/** A process of `uid` in a session of its own, made non-dumpable (/proc/<pid> then shows root). */
async function leftover(uid: number): Promise<number> {
  const p = spawn(
    SETPRIV,
    asUid(uid, [
      "setsid",
      PYTHON,
      "-c",
      "import ctypes,os,time; ctypes.CDLL(None).prctl(4,0,0,0,0); print(os.getpid(), flush=True); time.sleep(60)",
    ]),
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  return new Promise<number>((resolve, reject) => {
    p.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    p.once("exit", (code) => reject(new Error(`leftover exited ${code}`)));
  });
}

/** A process holding `lock` (flock) for `seconds`, as another pass would; resolves once it does. */
async function holdLock(lock: string, seconds: number): Promise<ChildProcess> {
  const holder = spawn(
    PYTHON,
    [
      "-c",
      `import fcntl,os,time; fd=os.open(${JSON.stringify(lock)}, os.O_RDWR|os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print(1, flush=True); time.sleep(${seconds})`,
    ],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  await new Promise((r) => holder.stdout.once("data", r));
  return holder;
}

function killIfAlive(pid: number | undefined): void {
  try {
    if (pid !== undefined) process.kill(pid, "SIGKILL");
  } catch {
    // gone already
  }
}

/**
 * A uid clean-up's kill pass forked by the spawner (runtimes/spawner/fizzspawn/killpass.py, op
 * "killpass"): what the poolkeeper no longer forks itself or starts an interpreter for.
 */
describe("spawner: a uid clean-up's kill pass", function () {
  this.timeout(30_000);
  const h = useSpawnerHarness("fizz-spawner-kp-");
  before(function () {
    if (!isRoot || !existsSync(SETPRIV)) this.skip(); // root: it switches uids
  });

  it("kills a detached, non-dumpable process of the uid from a fork of the spawner", async () => {
    const sp = await h.start();
    const uid = 258_000 + Math.floor(Math.random() * 900);
    const pid = await leftover(uid);

    expect(await sp.killPass(RUID, uid, "")).to.equal(0);
    expect(await until(() => !alive(pid), 50, 20)).to.equal(true);
  });

  it("refuses a pass for root, or with the uid as its own ruid, and signals nothing", async () => {
    const raw = startRawSpawner(path.join(h.dir, "raw.sock"));
    const uid = 258_000 + Math.floor(Math.random() * 900);
    const pid = await leftover(uid);
    try {
      // uid 0: setresuid(ruid, 0, ruid) keeps root's capabilities and kill(-1) reaches every
      // process; ruid = uid: the uid's processes could kill the pass first.
      // Each with a deadline far off unless that is what is wrong (none: a pass of the spawner's
      // must have one, killpass.py).
      const later = Number(process.hrtime.bigint() / 1_000_000n) + 600_000;
      const asked: Array<[unknown, unknown, unknown, unknown]> = [
        [RUID, 0, "", later],
        [0, uid, "", later],
        [uid, uid, "", later],
        [RUID, -1, "", later],
        [RUID, 4_294_967_295, "", later],
        [RUID, "1", "", later],
        [RUID, uid, 7, later],
        [RUID, uid, "", undefined],
        [RUID, uid, "", String(later)],
        [RUID, uid, "", true],
      ];
      for (const [id, [ruid, u, lock, by]] of asked.entries()) {
        raw.send({ op: "killpass", id, ruid, uid: u, lock, by });
        expect(await raw.seen("passed", id), `pass ${id}`).to.deep.include({ code: null });
      }
      await sleep(100);
      expect(alive(pid), "the uid's process").to.equal(true);
      expect(raw.py.exitCode, "the spawner").to.equal(null);
    } finally {
      await raw.end();
      process.kill(pid, "SIGKILL");
    }
  });

  it("runs the pass with nothing of the spawner's open: only /dev/null and its lock", async () => {
    const sp = await h.start();
    const uid = 258_000 + Math.floor(Math.random() * 900);
    const lock = path.join(h.dir, "kill-pass");
    // Another holder has the lock: the pass waits for it (up to 2 s), long enough to look at.
    const holder = await holdLock(lock, 1);
    const passed = sp.killPass(RUID, uid, lock);
    const pass = await until(
      () =>
        childrenOf(sp.pid!).find((pid) => {
          try {
            return readlinkSync(`/proc/${pid}/exe`).includes("python");
          } catch {
            return false;
          }
        }),
      50,
      10,
    );
    expect(pass, "the pass, a child of the spawner").to.be.a("number");
    const open = readdirSync(`/proc/${pass}/fd`).map((fd) => [
      Number(fd),
      readlinkSync(`/proc/${pass}/fd/${fd}`),
    ]);
    expect(open.filter(([, to]) => to !== "/dev/null" && to !== lock)).to.deep.equal([]);
    expect(await passed).to.equal(0);
    holder.kill("SIGKILL");
  });

  it("answers undefined once the spawner is gone: the clean-up then runs the pass itself", async () => {
    const sp = await h.start();
    process.kill(sp.pid!, "SIGKILL");
    await until(() => !sp.usable, 100, 10);
    expect(await sp.killPass(RUID, 258_999, "")).to.equal(undefined);
  });

  it("a pass the spawner forks only after the client gave up on it signals nothing: the uid's next process lives", async function () {
    this.timeout(60_000);
    const sp = await h.start();
    const uid = 258_000 + Math.floor(Math.random() * 900);
    // The spawner does not get to the request within PASS_BOUND_MS (stopped here; a starved or
    // blocked loop in production): the clean-up runs its own pass, and the uid goes to the next
    // instance, another tenant's, while the request still waits in the spawner's stdin.
    process.kill(sp.pid!, "SIGSTOP");
    let next: number | undefined;
    try {
      expect(await sp.killPass(RUID, uid, "")).to.equal(undefined);
      next = await leftover(uid);
    } finally {
      process.kill(sp.pid!, "SIGCONT");
    }
    try {
      await sleep(300); // the spawner reads the stale request now
      expect(next !== undefined && alive(next), "the uid's next process").to.equal(true);
    } finally {
      killIfAlive(next);
    }
  });

  it("a pass orphaned by the spawner's death is not counted as not run before its deadline: it cannot signal after the clean-up", async function () {
    this.timeout(60_000);
    const sp = await h.start();
    const uid = 258_000 + Math.floor(Math.random() * 900);
    const lock = path.join(h.dir, "kill-pass");
    // Another pass holds the lock: this one waits in the spawner's fork.
    const holder = await holdLock(lock, 1.5);
    const passed = sp.killPass(RUID, uid, lock);
    const forked = await until(() => childrenOf(sp.pid!)[0], 50, 10);
    expect(forked, "the pass, forked").to.be.a("number");
    process.kill(sp.pid!, "SIGKILL");
    expect(await passed).to.equal(undefined);
    // The clean-up has moved on: the uid's next instance starts.
    const next = await leftover(uid);
    try {
      await sleep(1_800); // past the holder's release: the orphaned pass got the lock by now
      expect(alive(next), "the uid's next process").to.equal(true);
    } finally {
      killIfAlive(next);
      holder.kill("SIGKILL");
    }
  });

  it("runs a forked pass whose lock is never granted after 2 s, within its deadline", async () => {
    const sp = await h.start();
    const uid = 258_000 + Math.floor(Math.random() * 900);
    const lock = path.join(h.dir, "kill-pass");
    const holder = await holdLock(lock, 10);
    const pid = await leftover(uid);
    try {
      const started = Date.now();
      expect(await sp.killPass(RUID, uid, lock)).to.equal(0);
      expect(Date.now() - started).to.be.within(1900, 4000);
      expect(await until(() => !alive(pid), 50, 20)).to.equal(true);
    } finally {
      holder.kill("SIGKILL");
      killIfAlive(pid);
    }
  });

  it("killUid runs the pass through the spawner when given it, and no interpreter of its own", async () => {
    const sp = await h.start();
    const uid = 258_000 + Math.floor(Math.random() * 900);
    const pid = await leftover(uid);
    // An interpreter that records being started and fails: the fallbacks would show.
    const python = path.join(h.dir, "python3");
    const setpriv = path.join(h.dir, "setpriv");
    writeFileSync(python, `#!/bin/sh\necho "$@" >> ${h.dir}/interpreter\nexit 1\n`);
    writeFileSync(setpriv, `#!/bin/sh\necho "$@" >> ${h.dir}/setpriv-ran\n`);
    chmodSync(python, 0o755);
    chmodSync(setpriv, 0o755);

    const result = await killUid(uid, {
      setpriv,
      shieldedKill: { python, script: SPAWNER_SCRIPT, ruid: RUID },
      forkPass: (r, u, l) => sp.killPass(r, u, l),
    });
    expect(result.left).to.equal(0);
    expect(alive(pid)).to.equal(false);
    expect(pidsOfUid(uid)).to.deep.equal([]);
    expect(existsSync(path.join(h.dir, "interpreter")), "an interpreter was started").to.equal(
      false,
    );
    expect(existsSync(path.join(h.dir, "setpriv-ran")), "the setpriv pass ran").to.equal(false);
  });

  it("killUid falls back to its own interpreter when the spawner cannot run the pass", async () => {
    const uid = 258_000 + Math.floor(Math.random() * 900);
    const pid = await leftover(uid);
    // The real interpreter, recording its arguments first.
    const python = path.join(h.dir, "python3");
    writeFileSync(python, `#!/bin/sh\necho "$@" >> ${h.dir}/interpreter\nexec ${PYTHON} "$@"\n`);
    chmodSync(python, 0o755);
    let asked = 0;
    const result = await killUid(uid, {
      shieldedKill: { python, script: SPAWNER_SCRIPT, ruid: RUID },
      forkPass: () => {
        asked++;
        return Promise.resolve(undefined);
      },
    });
    expect(asked).to.equal(1);
    expect(readFileSync(path.join(h.dir, "interpreter"), "utf8")).to.equal(
      `-I -S ${SPAWNER_SCRIPT} --kill-pass ${RUID} ${uid} \n`,
    );
    expect(result.left).to.equal(0);
    expect(alive(pid)).to.equal(false);
  });
});
