import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { signalGroup } from "../src/process-child";
import type { Spawner } from "../src/spawner-client";
import { alive, useSpawnerHarness } from "./spawner-harness";

const NS_LAST_PID = "/proc/sys/kernel/ns_last_pid";

/**
 * The spawner reaps a child at once; the poolkeeper learns of the exit when it reads the exit
 * line. A pid reused in between (forced here with ns_last_pid, all in one synchronous turn so the
 * exit line stays unread) must not be signalled as if it were still the instance.
 */
describe("spawner: a reaped child's pid reused before its exit is read", function () {
  this.timeout(30_000);
  const h = useSpawnerHarness("fizz-spawner-p-");
  let sp: Spawner | undefined;
  let impostor: ChildProcess | undefined;

  before(function () {
    if (process.getuid?.() !== 0) this.skip();
    try {
      writeFileSync(NS_LAST_PID, readFileSync(NS_LAST_PID, "utf8"));
    } catch {
      this.skip(); // no CAP_SYS_ADMIN over the pid namespace: the reuse cannot be forced
    }
  });
  afterEach(() => {
    impostor?.kill("SIGKILL");
    impostor = undefined;
  });

  it("signalGroup goes through the spawner, which refuses: the session now at that pid is not signalled", async function () {
    sp = await h.start({ log: () => undefined });
    const req = {
      file: "sleep",
      args: ["300"],
      cwd: "/",
      env: { PATH: "/usr/bin:/bin" },
      stdio: ["pipe", "pipe", "pipe"] as Array<"pipe" | "ignore">,
    };
    // Another process may take the pid between the reap and our spawn: tried a few times.
    for (let attempt = 0; attempt < 5 && !impostor; attempt++) {
      const child = await sp.spawn(req);
      const pid = child.pid!;
      process.kill(pid, "SIGKILL");
      while (existsSync(`/proc/${pid}`)); // until the spawner has reaped it
      writeFileSync(NS_LAST_PID, String(pid - 1));
      // Its own session and group at the same number, as any detached process would have.
      const p = spawn("sleep", ["300"], { detached: true, stdio: "ignore" });
      if (p.pid !== pid) {
        p.kill("SIGKILL");
        continue;
      }
      impostor = p;
      expect(child.exitCode, "the exit is not read yet").to.equal(null);
      signalGroup(child, "SIGTERM");
    }
    if (!impostor) this.skip(); // the pid was always taken by another process first
    // Requests are handled in order: once this spawn is back, the kill above was handled.
    await sp.spawn({ ...req, file: "true", args: [] });
    expect(alive(impostor.pid!), "the process now at the reaped pid").to.equal(true);
  });
});
