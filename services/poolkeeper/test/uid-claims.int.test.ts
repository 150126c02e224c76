import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createLogger } from "@fizz/kit";
import { expect } from "chai";
import { instanceAgent } from "../src/instance-http";
import { instanceBaseEnv, UidPool } from "../src/isolation";
import { ProcessBackend } from "../src/process-backend";

/**
 * Claims (a uid's lock file, <workDir>/poolkeeper.pid) name their owner by pid. A restarted
 * container's poolkeeper often gets the very pid its dead predecessor had (pid 1, or the same
 * small pid after tini): such a claim must count as dead, while one of a live pool or backend of
 * this same process still counts as live.
 */
describe("claims of a dead process whose pid this process has now", function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "fizz-claims-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("hands out a uid whose lock file a previous process with this pid left", async () => {
    const locks = path.join(dir, "locks");
    const base = 261_000;
    await mkdir(locks, { recursive: true });
    await writeFile(path.join(locks, String(base)), String(process.pid));
    const pool = new UidPool(base, 2, locks);
    expect(pool.take()).to.equal(base);
  });

  it("still skips a uid claimed by a live pool of this process", () => {
    const locks = path.join(dir, "locks");
    const base = 261_100;
    const a = new UidPool(base, 2, locks);
    const b = new UidPool(base, 2, locks);
    expect(a.take()).to.equal(base);
    expect(b.take()).to.equal(base + 1);
    a.release(base);
    expect(b.take()).to.equal(base);
  });

  it("removes stale instance directories when poolkeeper.pid names this pid from a previous run", async () => {
    const work = path.join(dir, "work");
    const stale = path.join(work, "instances", "hello-0badcafe");
    await mkdir(stale, { recursive: true });
    await writeFile(path.join(work, "poolkeeper.pid"), String(process.pid));
    const lines: string[] = [];
    const agent = instanceAgent();
    const backend = new ProcessBackend({
      workDir: work,
      runtimesDir: "/nonexistent-runtimes",
      python: "python3",
      spawnTimeoutMs: 20_000,
      killGraceMs: 100,
      baseEnv: instanceBaseEnv({}),
      isolation: { uids: undefined, setpriv: undefined },
      allowEnvCommand: true,
      agent,
      logger: createLogger("poolkeeper", "info", { write: (l: string) => void lines.push(l) }),
    });
    try {
      await backend.swept;
      expect(existsSync(stale), lines.join("")).to.equal(false);
    } finally {
      await backend.close();
      agent.destroy();
    }
  });
});
