import { expect } from "chai";
import { spawn } from "node:child_process";
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
      const asked: Array<[unknown, unknown, unknown]> = [
        [RUID, 0, ""],
        [0, uid, ""],
        [uid, uid, ""],
        [RUID, -1, ""],
        [RUID, 4_294_967_295, ""],
        [RUID, "1", ""],
        [RUID, uid, 7],
      ];
      for (const [id, [ruid, u, lock]] of asked.entries()) {
        raw.send({ op: "killpass", id, ruid, uid: u, lock });
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
    const holder = spawn(
      PYTHON,
      [
        "-c",
        `import fcntl,os,time; fd=os.open(${JSON.stringify(lock)}, os.O_RDWR|os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print(1, flush=True); time.sleep(1)`,
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    await new Promise((r) => holder.stdout.once("data", r));
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
