import { execFile } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { silentLogger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { LogTail } from "../src/build/log-tail";
import { BuildSandbox, type BuildWorkspace, type RunResult } from "../src/build/sandbox";
import { loadConfig } from "../src/config";
import { instanceBaseEnv } from "../src/isolation";
import { killUid } from "../src/uid-cleanup";
import {
  canForkBomb,
  capturingLogger,
  expectRefused,
  FORK_BOMB_PY,
  LIMIT,
  nprocLimitLine,
  ownHardNproc,
  PRLIMIT,
  PYTHON,
  SETPRIV,
} from "./fork-bomb";
import { liveOfUid } from "./harness";

/**
 * A build step (an install script) that forks argv[1] children sleeping 120 s (FORK_BOMB_PY),
 * writes how many forks succeeded and the errno of the first that failed to argv[2], then holds
 * its children until argv[3] exists, and fails when a fork did.
 */
const BOMB =
  FORK_BOMB_PY +
  String.raw`
import json, sys
forked, err = bomb(int(sys.argv[1]), 120)
report = json.dumps({"pid": os.getpid(), "forked": forked, "error": err})
print(report, flush=True)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(report)
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
for _ in range(1200):
    if os.path.exists(sys.argv[3]):
        break
    time.sleep(0.05)
sys.exit(1 if err else 0)
`;

function sandboxOf(dir: string, env: Record<string, string>, base: number): BuildSandbox {
  const config = loadConfig({
    ...env,
    FIZZ_INSTANCE_UID_BASE: String(base),
    FIZZ_INSTANCE_UID_COUNT: "2",
    FIZZ_INSTANCE_UID_LOCKS: path.join(dir, "locks"),
  });
  return new BuildSandbox({
    root: path.join(dir, "builds"),
    isolation: config.isolation,
    killGraceMs: 100,
    baseEnv: instanceBaseEnv({}),
    reach: [PYTHON],
    logger: silentLogger(),
  });
}

function step(ws: BuildWorkspace, argv: string[], log = new LogTail()): Promise<RunResult> {
  return ws.run(argv, {
    cwd: ws.dir,
    env: ws.env(undefined),
    deadline: Date.now() + 90_000,
    log,
    signal: new AbortController().signal,
  });
}

describe("build process limit (FIZZ_BUILD_NPROC through prlimit)", function () {
  this.timeout(120_000);

  it("configures the limit as root (FIZZ_BUILD_NPROC, default 4096, 0 = none) and names a bad value", () => {
    const root = { isRoot: true, exists: () => true };
    expect(loadConfig({}, "/", root).isolation.buildNproc).to.deep.equal({
      limit: 4096,
      prlimit: PRLIMIT,
    });
    expect(loadConfig({ FIZZ_BUILD_NPROC: "64" }, "/", root).isolation.buildNproc).to.deep.equal({
      limit: 64,
      prlimit: PRLIMIT,
    });
    // Independent of the instances' limit, either way.
    const off = loadConfig({ FIZZ_BUILD_NPROC: "0" }, "/", root).isolation;
    expect(off.buildNproc).to.equal(undefined);
    expect(off.nproc?.limit).to.equal(256);
    const instancesOff = loadConfig({ FIZZ_INSTANCE_NPROC: "0" }, "/", root).isolation;
    expect(instancesOff.buildNproc?.limit).to.equal(4096);
    const noPrlimit = { isRoot: true, exists: (f: string) => f !== PRLIMIT };
    expect(loadConfig({}, "/", noPrlimit).isolation.buildNproc).to.deep.equal({
      limit: 4096,
      prlimit: undefined,
    });
    // Not root: builds run as the poolkeeper's own user, whose other processes would count.
    const notRoot = loadConfig({}, "/", { isRoot: false, exists: () => true });
    expect(notRoot.isolation.buildNproc).to.equal(undefined);
    expectRefused(() => loadConfig({ FIZZ_BUILD_NPROC: "-1" }, "/", root), "FIZZ_BUILD_NPROC");
  });

  it("warns once when prlimit is missing, and runs builds without it", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "fizz-build-nproc-"));
    const { logger, lines } = capturingLogger();
    try {
      new BuildSandbox({
        root: path.join(dir, "builds"),
        isolation: {
          uids: { base: 258_000, count: 1, lockDir: path.join(dir, "locks") },
          setpriv: SETPRIV,
          buildNproc: { limit: LIMIT, prlimit: undefined },
        },
        killGraceMs: 100,
        baseEnv: {},
        reach: [],
        logger,
      });
      expect(lines.filter((l) => l.includes("FIZZ_BUILD_NPROC"))).to.have.length(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  describe("as root, with real build steps", () => {
    let dir: string;
    const uids: number[] = [];

    beforeEach(async function () {
      if (!canForkBomb()) this.skip();
      dir = await mkdtemp(path.join(tmpdir(), "fizz-build-nproc-"));
    });
    afterEach(async () => {
      for (const uid of uids.splice(0)) await killUid(uid, SETPRIV);
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it("stops a build step's fork bomb at the limit with EAGAIN; the poolkeeper and another build keep forking", async () => {
      const base = 258_100 + Math.floor(Math.random() * 800);
      const sandbox = sandboxOf(dir, { FIZZ_BUILD_NPROC: String(LIMIT) }, base);
      const attacker = await sandbox.open("bomb");
      const other = await sandbox.open("other");
      uids.push(attacker.uid!, other.uid!);
      expect(attacker.uid).to.be.a("number");
      expect(other.uid).to.not.equal(attacker.uid);
      await attacker.handOver();
      await other.handOver();

      const report = path.join(attacker.dir, "report.json");
      const go = path.join(attacker.dir, "go");
      const log = new LogTail();
      const bomb = step(attacker, [PYTHON, "-c", BOMB, "400", report, go], log);
      try {
        const seen = await waitFor(
          () =>
            existsSync(report)
              ? (JSON.parse(readFileSync(report, "utf8")) as {
                  pid: number;
                  forked: number;
                  error: string | null;
                })
              : undefined,
          { timeoutMs: 60_000, what: "the fork bomb's report" },
        );
        expect(seen.error, JSON.stringify(seen)).to.equal("EAGAIN");
        expect(seen.forked).to.be.below(LIMIT);
        // Set by prlimit before the drop to the uid, and inherited through setpriv's exec.
        const limits = readFileSync(`/proc/${seen.pid}/limits`, "utf8");
        expect(limits).to.match(nprocLimitLine(LIMIT));
        expect(liveOfUid(attacker.uid!)).to.be.at.most(LIMIT);

        // While its children still hold the limit: another build (its own uid, its own count)
        // forks, and the poolkeeper itself does.
        const otherLog = new LogTail();
        const fine = await step(
          other,
          [PYTHON, "-c", BOMB, "3", "report.json", "report.json"],
          otherLog,
        );
        expect(fine.code, otherLog.text()).to.equal(0);
        expect(otherLog.text()).to.include('"forked": 3, "error": null');
        await promisify(execFile)("/bin/true");
      } finally {
        writeFileSync(go, "");
      }
      // The step fails (its own exit status), its log says why, and nothing of it is left.
      const result = await bomb;
      expect(result.code, log.text()).to.equal(1);
      expect(log.text()).to.include('"error": "EAGAIN"');
      await attacker.dispose();
      await other.dispose();
      expect(liveOfUid(attacker.uid!)).to.equal(0);
    });

    it("runs a build step under the default limit (4096, or the poolkeeper's own hard limit if lower)", async () => {
      const sandbox = sandboxOf(dir, {}, 259_000 + Math.floor(Math.random() * 800));
      const ws = await sandbox.open("default");
      uids.push(ws.uid!);
      await ws.handOver();
      const log = new LogTail();
      const result = await step(ws, ["/bin/cat", "/proc/self/limits"], log);
      expect(result.code, log.text()).to.equal(0);
      const want = Math.min(4096, ownHardNproc() ?? Infinity);
      expect(log.text()).to.match(nprocLimitLine(want));
      await ws.dispose();
    });
  });
});
