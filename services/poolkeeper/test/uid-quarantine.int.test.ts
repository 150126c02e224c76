import { expect } from "chai";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createLogger } from "@fizz/kit";
import { BuildSandbox } from "../src/build/sandbox";
import { killUid } from "../src/uid-cleanup";

const SETPRIV = "/usr/bin/setpriv";
const isRoot = process.getuid?.() === 0;

function aliveOfUid(uid: number): boolean {
  for (const name of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, "latin1");
      if (new RegExp(`^Uid:\\s+${uid}\\s`, "m").test(status) && !/^State:\s+Z/m.test(status))
        return true;
    } catch {
      // gone meanwhile
    }
  }
  return false;
}

describe("build uid quarantine", function () {
  this.timeout(20_000);

  it("does not pack a build, nor hand its uid out again, when its processes could not all be killed", async function () {
    if (!isRoot || !existsSync(SETPRIV)) this.skip(); // needs root to run builds as uids
    const dir = mkdtempSync(path.join(tmpdir(), "fizz-quarantine-"));
    const base = 256_000 + Math.floor(Math.random() * 900);
    const lines: string[] = [];
    const sink = { write: (l: string) => void lines.push(l) };
    const sandbox = new BuildSandbox({
      root: path.join(dir, "builds"),
      // No rounds: killing cannot finish, as when a uid's processes outrun every round.
      isolation: {
        uids: { base, count: 1, lockDir: path.join(dir, "locks") },
        setpriv: undefined, // the /proc rounds alone (the as-uid pass would kill the sleep)
        killBound: { rounds: 0, ms: 0 },
      },
      killGraceMs: 100,
      baseEnv: {},
      reach: [],
      logger: createLogger("poolkeeper", "info", sink),
    });
    let left: ReturnType<typeof spawn> | undefined;
    try {
      const ws = await sandbox.open("quarantine");
      expect(ws.uid).to.equal(base);
      // What the build left running (a daemon out of its process group).
      left = spawn(
        SETPRIV,
        [`--reuid=${base}`, `--regid=${base}`, "--clear-groups", "--", "setsid", "sleep", "60"],
        { stdio: "ignore" },
      );
      for (let i = 0; i < 100 && !aliveOfUid(base); i++)
        await new Promise((r) => setTimeout(r, 20));
      expect(aliveOfUid(base), "the left-over process started").to.equal(true);

      // Its output is not read (packed by root) while something of the build may still run.
      let refused: unknown;
      await ws.quiesce().catch((e: unknown) => (refused = e));
      expect((refused as Error | undefined)?.message).to.match(/survived every kill/);

      await ws.dispose();
      expect(lines.join("")).to.include("the uid is quarantined");
      // The pool's one uid is quarantined: the next build gets none.
      let err: unknown;
      await sandbox.open("next").catch((e: unknown) => (err = e));
      expect((err as { code?: string } | undefined)?.code).to.equal("NO_CAPACITY");
    } finally {
      left?.kill("SIGKILL");
      await killUid(base, undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
