import { expect } from "chai";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { INSTANCE_PATH } from "../src/instance-launch";
import { UidPool } from "../src/isolation";
import { SPAWNER_SCRIPT, startSpawner } from "../src/spawner-client";
import { killUid } from "../src/uid-cleanup";
import {
  alive,
  asUid,
  isRoot,
  pidsOfUid,
  PYTHON,
  removeDir,
  SETPRIV,
  sleep,
  tempDir,
  until,
} from "./process-helpers";

/**
 * A hostile leftover, started by a root parent that only reaps (a subreaper: the orphans' zombies
 * would otherwise pile up under a pid 1 that reaps slowly): as the uid, it SIGKILLs everything the
 * uid may signal (the kill pass run as the uid included), forks, and its parent exits, so it lives
 * at a new pid every ~3 ms and a /proc listing names a pid already gone. Bounded: 10 s, and
 * RLIMIT_NPROC 64 for the uid.
 */
const HOPPER = [
  "import ctypes, os, resource, sys, time",
  "uid = int(sys.argv[1])",
  "ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)",
  "if os.fork() == 0:",
  "    os.setsid()",
  "    resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))",
  "    os.setgroups([]); os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid)",
  "    end = time.monotonic() + 10",
  "    while time.monotonic() < end:",
  "        try: os.kill(-1, 9)",
  "        except OSError: pass",
  "        try:",
  "            if os.fork(): os._exit(0)",
  "        except OSError: pass",
  "    os._exit(0)",
  "end = time.monotonic() + 15",
  "while time.monotonic() < end:",
  "    try: os.wait()",
  "    except ChildProcessError: break",
].join("\n");
function tryTake(pool: UidPool): number | undefined {
  try {
    return pool.take();
  } catch {
    return undefined; // every uid in use
  }
}

/** The shielded kill pass as the process backend runs it (config.ts: the uid below the range). */
const SHIELDED = { python: PYTHON, script: SPAWNER_SCRIPT, ruid: 257_999 };

describe("instance uid clean-up", function () {
  this.timeout(20_000);

  it("hands a released uid out last (round robin), not to the very next instance", () => {
    const dir = tempDir("fizz-uids-");
    try {
      const pool = new UidPool(200_000, 3, dir);
      const first = pool.take();
      pool.release(first);
      expect(pool.take()).to.not.equal(first);
    } finally {
      removeDir(dir);
    }
  });

  it("kills a left-over process of the uid that detached and hid its /proc entry", async function () {
    if (!isRoot || !existsSync(SETPRIV) || !existsSync(PYTHON)) this.skip(); // needs root to switch uids, as the process backend does
    const uid = 259_000 + Math.floor(Math.random() * 900);
    // What a hostile function leaves behind: a new session (out of the instance's process group)
    // that made itself non-dumpable, so the files under /proc/<pid> show root as their owner.
    const hider = spawn(
      SETPRIV,
      asUid(uid, [
        "setsid",
        PYTHON,
        "-c",
        "import ctypes,os,sys,time; ctypes.CDLL(None).prctl(4,0,0,0,0); print(os.getpid(), flush=True); time.sleep(60)",
      ]),
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    const pid = await new Promise<number>((resolve, reject) => {
      hider.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
      hider.once("exit", (code) => reject(new Error(`hider exited ${code}`)));
    });
    await killUid(uid, SETPRIV);

    expect(await until(() => !alive(pid), 50, 20)).to.equal(true);
  });

  it("leaves no process of the uid alive when one kills every kill pass and hops to new pids", async function () {
    if (!isRoot || !existsSync(SETPRIV) || !existsSync(PYTHON)) this.skip(); // root: it switches uids
    this.timeout(60_000);
    const uid = 258_000 + Math.floor(Math.random() * 900);
    // A hostile function's leftover: it SIGKILLs everything its uid may signal (the kill pass
    // run as the uid included) and forks to a new pid each turn, its parent exiting, so a /proc
    // listing names a pid already gone. Bounded: 10 s, and 64 processes of the uid at most.
    const attacker = spawn(PYTHON, ["-I", "-S", "-c", HOPPER, String(uid)], { stdio: "ignore" });
    const exited = new Promise<boolean>((r) => attacker.once("exit", () => r(true)));
    try {
      // A scan often misses it (that is the attack): look until one sees it.
      const seen = await until(() => pidsOfUid(uid).length, 200, 10);
      expect(seen, "the attacker started").to.be.above(0);
      await sleep(200); // hopping at full speed

      const result = await killUid(uid, { setpriv: SETPRIV, shieldedKill: SHIELDED });
      expect(pidsOfUid(uid), "processes of the uid alive right after killUid").to.deep.equal([]);
      // One scan can miss a hopper (as above); its root parent cannot: the orphans are its
      // children, and it exits once it has none left. Still there after 1 s: something survived.
      const reaperDone = await Promise.race([
        exited,
        new Promise<boolean>((r) => setTimeout(() => r(false), 1000)),
      ]);
      expect(reaperDone, "the attacker's reaper saw all its processes die").to.equal(true);
      expect(result.left).to.equal(0);
    } finally {
      attacker.kill("SIGKILL");
      await killUid(uid, undefined); // never leave the attacker running, whatever failed
    }
  });

  for (const via of ["its own interpreter", "a fork of the spawner"] as const)
    it(`kills a leftover that SIGKILLs everything its uid may signal with the first pass alone (${via})`, async function () {
      if (!isRoot || !existsSync(SETPRIV) || !existsSync(PYTHON)) this.skip(); // root: it switches uids
      this.timeout(60_000);
      const spawnerDir = tempDir("fizz-kill-sp-");
      const spawner =
        via === "a fork of the spawner"
          ? await startSpawner({ python: PYTHON, dir: spawnerDir })
          : undefined;
      const forkPass = spawner && ((r: number, u: number, l: string) => spawner.killPass(r, u, l));
      // The hopper kills the pass whenever the pass runs as the uid (setpriv's), and can then slip
      // past the root scan by forking between a listing and its check. The shielded pass runs with
      // the uid as its effective uid only, which the uid's processes may not signal: it must end
      // the hopper by itself. Bound 0: the root scan counts without killing.
      for (let attempt = 0; attempt < 3; attempt++) {
        const uid = 258_000 + Math.floor(Math.random() * 900);
        const attacker = spawn(PYTHON, ["-I", "-S", "-c", HOPPER, String(uid)], {
          stdio: "ignore",
        });
        const exited = new Promise<boolean>((r) => attacker.once("exit", () => r(true)));
        try {
          expect(
            await until(() => pidsOfUid(uid).length, 200, 10),
            "the attacker started",
          ).to.be.above(0);
          await sleep(200); // hopping, and killing what its uid may signal, at full speed
          await killUid(
            uid,
            { setpriv: SETPRIV, shieldedKill: SHIELDED, forkPass },
            { rounds: 0, ms: 0 },
          );
          const reaperDone = await Promise.race([
            exited,
            new Promise<boolean>((r) => setTimeout(() => r(false), 2000)),
          ]);
          expect(reaperDone, "the attacker's reaper saw all its processes die").to.equal(true);
        } finally {
          attacker.kill("SIGKILL");
          await killUid(uid, undefined);
        }
      }
      await spawner?.close();
      removeDir(spawnerDir);
    });

  it("does not reach processes of other uids with the shielded pass", async function () {
    if (!isRoot || !existsSync(SETPRIV) || !existsSync(PYTHON)) this.skip(); // root: it switches uids
    const uid = 258_000 + Math.floor(Math.random() * 900);
    const other = spawn(SETPRIV, asUid(uid + 1, ["setsid", "sleep", "60"]), { stdio: "ignore" });
    const pid = await until(() => pidsOfUid(uid + 1)[0], 100, 20);
    try {
      expect(pid, "the other uid's process started").to.be.a("number");
      // Bound 0: only the pass signals; the root scan counts.
      await killUid(uid, { shieldedKill: SHIELDED }, { rounds: 0, ms: 0 });
      await sleep(100);
      expect(alive(pid!), "a process of the next uid survives").to.equal(true);
      expect(alive(process.pid)).to.equal(true);
    } finally {
      other.kill("SIGKILL");
      await killUid(uid + 1, undefined);
    }
  });

  it("runs concurrent clean-ups' shielded passes without one killing another first (they share their real uid)", async function () {
    if (!isRoot || !existsSync(SETPRIV) || !existsSync(PYTHON)) this.skip(); // root: it switches uids
    this.timeout(60_000);
    // Every pass has the same real uid, so each may signal the others while it runs: a pass
    // killed before it signalled left its uid to the setpriv pass, which the uid's processes can
    // kill (as above). Measured without the lock: ~1 in 4 passes of 8 at once died of another's
    // SIGKILL, ~1 in 600 before signalling. The fake setpriv only records that it was needed.
    const dir = tempDir("fizz-kill-pass-");
    const fallback = path.join(dir, "setpriv");
    writeFileSync(fallback, `#!/bin/sh\necho "$@" >> ${dir}/fell-back\n`);
    chmodSync(fallback, 0o755);
    const pass = {
      setpriv: fallback,
      shieldedKill: { ...SHIELDED, lock: path.join(dir, "kill-pass") },
    };
    const uids = Array.from(
      { length: 8 },
      (_, i) => 258_000 + i * 100 + Math.floor(Math.random() * 100),
    );
    try {
      for (let round = 0; round < 10; round++) {
        const sleepers = uids.map((uid) =>
          spawn(SETPRIV, asUid(uid, ["sleep", "30"]), { stdio: "ignore" }),
        );
        const exited = sleepers.map((s) =>
          Promise.race([
            new Promise<boolean>((r) => s.once("exit", () => r(true))),
            sleep(1000).then(() => false),
          ]),
        );
        try {
          for (const uid of uids) await until(() => pidsOfUid(uid).length, 100, 5);
          // Bound 0: only the passes signal; the root scan counts.
          await Promise.all(uids.map((uid) => killUid(uid, pass, { rounds: 0, ms: 0 })));
          expect(
            existsSync(path.join(dir, "fell-back")),
            `round ${round}: a pass fell back`,
          ).to.equal(false);
          expect(await Promise.all(exited), `round ${round}: killed by the passes`).to.deep.equal(
            uids.map(() => true),
          );
        } finally {
          for (const s of sleepers) s.kill("SIGKILL");
        }
      }
    } finally {
      for (const uid of uids) await killUid(uid, undefined);
      removeDir(dir);
    }
  });

  it("runs the shielded pass after 2 s when its lock is never granted", async function () {
    if (!isRoot || !existsSync(SETPRIV) || !existsSync(PYTHON)) this.skip(); // root: it switches uids
    const dir = tempDir("fizz-kill-lock-");
    const lock = path.join(dir, "kill-pass");
    // Holds the lock for 10 s, as a pass stuck in it would.
    const holder = spawn(
      PYTHON,
      [
        "-c",
        `import fcntl,os,time; fd=os.open("${lock}",os.O_RDWR|os.O_CREAT); fcntl.flock(fd,fcntl.LOCK_EX); print(1,flush=True); time.sleep(10)`,
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    const uid = 258_000 + Math.floor(Math.random() * 900);
    const sleeper = spawn(SETPRIV, asUid(uid, ["sleep", "30"]), { stdio: "ignore" });
    const exited = new Promise<boolean>((r) => sleeper.once("exit", () => r(true)));
    try {
      await new Promise((r) => holder.stdout.once("data", r));
      await until(() => pidsOfUid(uid).length, 100, 5);
      const started = Date.now();
      await killUid(uid, { shieldedKill: { ...SHIELDED, lock } }, { rounds: 0, ms: 0 });
      expect(Date.now() - started).to.be.within(1900, 5000);
      expect(
        await Promise.race([exited, sleep(1000).then(() => false)]),
        "killed by the pass",
      ).to.equal(true);
    } finally {
      holder.kill("SIGKILL");
      sleeper.kill("SIGKILL");
      await killUid(uid, undefined);
      removeDir(dir);
    }
  });

  it("does not run the shielded pass when its uid switch keeps capabilities (SECBIT_NO_SETUID_FIXUP)", async function () {
    if (!isRoot || !existsSync(SETPRIV) || !existsSync(PYTHON) || !existsSync("/usr/bin/unshare"))
      this.skip();
    // With that bit (inherited, e.g. from a unit's SecureBits=no-setuid-fixup) setresuid keeps
    // root's capabilities, CAP_KILL among them, and kill(-1) reaches every process. Run in a pid
    // namespace of its own: there the pass is pid 1 and a root sleep its only other process.
    const dir = tempDir("fizz-kill-caps-");
    const python = path.join(dir, "python3");
    writeFileSync(
      python,
      `#!/bin/sh\nexec /usr/bin/unshare --pid --fork --mount-proc /bin/sh -c '/bin/sleep 5 & exec ${SETPRIV} --securebits=+no_setuid_fixup -- ${PYTHON} "$@"' sh "$@"\n`,
    );
    const fallback = path.join(dir, "setpriv");
    writeFileSync(fallback, `#!/bin/sh\necho "$@" >> ${dir}/fell-back\n`);
    chmodSync(python, 0o755);
    chmodSync(fallback, 0o755);
    try {
      await killUid(
        258_000 + Math.floor(Math.random() * 900),
        { setpriv: fallback, shieldedKill: { python, script: SPAWNER_SCRIPT, ruid: 257_999 } },
        { rounds: 0, ms: 0 },
      );
      expect(existsSync(path.join(dir, "fell-back")), "the setpriv pass ran instead").to.equal(
        true,
      );
    } finally {
      removeDir(dir);
    }
  });

  it("quarantines a uid whose processes could not all be killed: it is never handed out again", async function () {
    if (!isRoot || !existsSync(SETPRIV)) this.skip(); // needs root to start a process as the uid
    const dir = tempDir("fizz-uids-");
    const base = 257_000 + Math.floor(Math.random() * 900) * 2;
    const left = spawn(SETPRIV, asUid(base, ["setsid", "sleep", "60"]), { stdio: "ignore" });
    try {
      const pool = new UidPool(base, 2, dir);
      expect(pool.take()).to.equal(base);
      await until(() => pidsOfUid(base).length, 100, 20);
      // A bound of no rounds: killing cannot finish, as when a uid outruns every round.
      const result = await killUid(base, undefined, { rounds: 0, ms: 0 });
      expect(result.left).to.be.at.least(1);
      expect(pool.giveBack(base, result)).to.equal(false);
      const handed = [pool.take(), ...Array.from({ length: 5 }, () => tryTake(pool))];
      expect(handed).to.not.include(base);
      expect(pool.quarantined).to.deep.equal([base]);
      // A second pool on the same host (the build sandbox's) does not get it either.
      expect(tryTake(new UidPool(base, 2, dir))).to.not.equal(base);
    } finally {
      left.kill("SIGKILL");
      await killUid(base, undefined);
      removeDir(dir);
    }
  });

  it("gives a uid back to the pool when nothing of it is left", () => {
    const dir = tempDir("fizz-uids-");
    try {
      const pool = new UidPool(200_000, 1, dir);
      const uid = pool.take();
      expect(pool.giveBack(uid, { killed: 0, left: 0 })).to.equal(true);
      expect(pool.take()).to.equal(uid);
    } finally {
      removeDir(dir);
    }
  });

  it("runs the uid's kill without the poolkeeper's environment (its credentials)", async () => {
    // `kill -KILL -1` runs as the instance uid: what that uid left behind could read the
    // process's /proc/<pid>/environ before the signal lands, so it must hold nothing of ours.
    const dir = tempDir("fizz-kill-env-");
    const fake = path.join(dir, "setpriv");
    const seen = path.join(dir, "env");
    writeFileSync(fake, `#!/bin/sh\nenv > ${seen}\n`);
    chmodSync(fake, 0o755);
    process.env.FIZZ_TEST_CREDENTIAL = "s3cret";
    try {
      await killUid(259_999, fake);
      const env = readFileSync(seen, "utf8");
      expect(env).to.not.include("s3cret");
      expect(env).to.include(`PATH=${INSTANCE_PATH}`);
    } finally {
      delete process.env.FIZZ_TEST_CREDENTIAL;
      removeDir(dir);
    }
  });

  it("runs the shielded pass without the poolkeeper's environment, and the setpriv pass only when it fails", async () => {
    const dir = tempDir("fizz-kill-env-");
    const fakeSetpriv = path.join(dir, "setpriv");
    const fakePython = path.join(dir, "python3");
    writeFileSync(fakeSetpriv, `#!/bin/sh\nenv > ${dir}/setpriv-env\n`);
    writeFileSync(fakePython, `#!/bin/sh\nenv > ${dir}/python-env\nexit $(cat ${dir}/code)\n`);
    chmodSync(fakeSetpriv, 0o755);
    chmodSync(fakePython, 0o755);
    const pass = {
      setpriv: fakeSetpriv,
      shieldedKill: { python: fakePython, script: SPAWNER_SCRIPT, ruid: 257_999 },
    };
    process.env.FIZZ_TEST_CREDENTIAL = "s3cret";
    try {
      writeFileSync(path.join(dir, "code"), "0");
      await killUid(259_999, pass);
      expect(readFileSync(path.join(dir, "python-env"), "utf8")).to.not.include("s3cret");
      expect(
        existsSync(path.join(dir, "setpriv-env")),
        "setpriv ran after a pass that worked",
      ).to.equal(false);
      // Exit 3: the uid switch failed (an unmapped uid): the pass as the uid still runs.
      writeFileSync(path.join(dir, "code"), "3");
      await killUid(259_999, pass);
      expect(readFileSync(path.join(dir, "setpriv-env"), "utf8")).to.not.include("s3cret");
    } finally {
      delete process.env.FIZZ_TEST_CREDENTIAL;
      removeDir(dir);
    }
  });
});
