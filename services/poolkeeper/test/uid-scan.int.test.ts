import { expect } from "chai";
import { execFileSync, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from "node:fs";
import { killUid } from "../src/uid-cleanup";
import {
  alive,
  asUid,
  isRoot,
  pids,
  pidsOfUid,
  PYTHON,
  SETPRIV,
  sleep,
  until,
} from "./process-helpers";

/** A process that forks short-lived children as fast as it can, for 20 s at most. */
const CHURN = [
  "import os, time",
  "end = time.monotonic() + 20",
  "while time.monotonic() < end:",
  "    pid = os.fork()",
  "    if pid == 0: os._exit(0)",
  "    os.waitpid(pid, 0)",
].join("\n");

/**
 * The root /proc scan of a uid's clean-up (uid-cleanup.ts scanRound), alone: what it finds,
 * what it counts when it cannot read, and that it neither holds the loop nor takes others' churn
 * for the uid's. The kill passes before it are uid-cleanup.int's.
 */
describe("instance uid clean-up: the /proc scan", function () {
  this.timeout(20_000);

  it("kills a process of the uid with the /proc scan alone (a host without setpriv)", async function () {
    if (!isRoot || !existsSync(SETPRIV)) this.skip(); // needs root to start a process as the uid
    const uid = 259_000 + Math.floor(Math.random() * 900);
    const left = spawn(SETPRIV, asUid(uid, ["setsid", "sleep", "60"]), { stdio: "ignore" });
    // setpriv execs setsid, which forks when it leads a group: wait for the sleep itself.
    const pid = await until(() => pidsOfUid(uid)[0], 100, 20);
    expect(pid, "the left-over process started").to.be.a("number");

    expect((await killUid(uid, undefined)).killed).to.be.at.least(1);
    expect(await until(() => !alive(pid!), 50, 20)).to.equal(true);
    left.kill("SIGKILL");
  });

  it("reads a /proc status longer than the scan's buffer whole: a zombie of the uid with thousands of groups is not taken for a live process", async function () {
    if (!isRoot || !existsSync(PYTHON)) this.skip(); // needs root to switch uids
    const uid = 259_000 + Math.floor(Math.random() * 900);
    // A root parent that never reaps its child, which took 3,000 supplementary groups (a Groups
    // line of ~21 KB, past the 16 KiB read; Threads and SigPnd come after it) and the uid.
    const holder = spawn(
      PYTHON,
      [
        "-c",
        [
          "import os, sys, time",
          "uid = int(sys.argv[1])",
          "pid = os.fork()",
          "if pid == 0:",
          "    os.setgroups(list(range(300000, 303000)))",
          "    os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid)",
          "    os._exit(0)",
          "print(pid, flush=True)",
          "time.sleep(30)",
        ].join("\n"),
        String(uid),
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    try {
      const zombie = await new Promise<number>((resolve) =>
        holder.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))),
      );
      await until(() => readFileSync(`/proc/${zombie}/stat`, "latin1").includes(") Z"), 50, 20);
      expect(readFileSync(`/proc/${zombie}/status`).length).to.be.above(16_384);
      // No pass: the root scan alone decides. Read cut at the buffer, the zombie looked alive
      // (no Threads line) on every round, and the uid ended quarantined.
      const result = await killUid(uid, undefined, { rounds: 5, ms: 1000 });
      expect(result.left).to.equal(0);
    } finally {
      holder.kill("SIGKILL");
    }
  });

  it("does not find a uid empty while it cannot read /proc (out of descriptors): the uid is not given back", async function () {
    if (!isRoot || !existsSync(SETPRIV) || !existsSync("/usr/bin/prlimit")) this.skip();
    const uid = 259_000 + Math.floor(Math.random() * 900);
    const left = spawn(SETPRIV, asUid(uid, ["setsid", "sleep", "60"]), { stdio: "ignore" });
    const pid = await until(() => pidsOfUid(uid)[0], 100, 20);
    expect(pid, "the left-over process started").to.be.a("number");
    const limits = /^Max open files\s+(\d+)\s+(\d+)/m.exec(
      readFileSync("/proc/self/limits", "latin1"),
    );
    const [soft, hard] = [limits![1]!, limits![2]!];
    const held: number[] = [];
    let result: Awaited<ReturnType<typeof killUid>> | undefined;
    try {
      // This process's soft limit just above what it holds, then every descriptor taken.
      const open = readdirSync("/proc/self/fd").length;
      execFileSync("/usr/bin/prlimit", [`--pid=${process.pid}`, `--nofile=${open + 32}:${hard}`]);
      try {
        for (;;) held.push(openSync("/dev/null", "r"));
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code).to.equal("EMFILE");
      }
      // No pass (it would need a descriptor too): the root scan alone, and it cannot list /proc.
      result = await killUid(uid, undefined, { rounds: 2, ms: 200 });
    } finally {
      for (const fd of held) closeSync(fd);
      execFileSync("/usr/bin/prlimit", [`--pid=${process.pid}`, `--nofile=${soft}:${hard}`]);
      left.kill("SIGKILL");
      await killUid(uid, undefined);
    }
    expect(result.left, "processes counted as left").to.be.at.least(1);
  });

  it("lets the event loop run while it scans /proc (it runs beside cold starts)", async () => {
    // The scan reads status files synchronously (an async read of a /proc file cost 0.3-0.6 ms
    // per process) and so must yield between batches, or one clean-up holds every request.
    const processes = pids().length;
    let turns = 0;
    let ticking = true;
    const tick = () => {
      if (!ticking) return;
      turns++;
      setImmediate(tick);
    };
    setImmediate(tick);
    await killUid(259_998, undefined);
    ticking = false;
    if (processes > 64)
      expect(turns, `turns during a scan of ${processes} processes`).to.be.above(0);
  });

  it("does not quarantine an empty uid while other processes keep appearing on the host", async function () {
    if (!isRoot || !existsSync(PYTHON)) this.skip(); // root: the churners run as other uids
    this.timeout(60_000);
    // Another tenant's instance forking as fast as it can: new pids in every /proc listing.
    // Only processes of the uid being cleaned may keep the chase going; anyone else's churn
    // must not turn an empty uid into a quarantined one (that would drain the pool). Bounded:
    // 20 s, killed in the end.
    const churners = Array.from({ length: 4 }, () =>
      spawn(PYTHON, ["-I", "-S", "-c", CHURN], { stdio: "ignore" }),
    );
    try {
      await sleep(300); // churning at full speed
      const empty = 259_500 + Math.floor(Math.random() * 400);
      for (let i = 0; i < 5; i++) {
        const result = await killUid(empty, undefined, { rounds: 20, ms: 1000 });
        expect(result, `clean-up ${i} of an empty uid`).to.deep.equal({ killed: 0, left: 0 });
      }
    } finally {
      for (const c of churners) c.kill("SIGKILL");
    }
  });
});
