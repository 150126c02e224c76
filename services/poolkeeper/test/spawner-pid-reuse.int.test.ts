import { expect } from "chai";
import type { ChildProcess } from "node:child_process";
import { signalGroup } from "../src/process-child";
import type { SpawnedChild, Spawner } from "../src/spawner-client";
import { canForcePids, impostorAtReapedPid, untilReaped } from "./process-helpers";
import { alive, useSpawnerHarness } from "./spawner-harness";

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
    if (process.getuid?.() !== 0 || !canForcePids()) this.skip(); // the reuse cannot be forced
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
    let child: SpawnedChild | undefined;
    impostor = await impostorAtReapedPid(async () => {
      child = await sp!.spawn(req);
      process.kill(child.pid!, "SIGKILL");
      untilReaped(child.pid!); // by the spawner; its exit line stays unread
      return child.pid!;
    });
    if (!impostor) this.skip(); // the pid was always taken by another process first
    expect(child!.exitCode, "the exit is not read yet").to.equal(null);
    signalGroup(child!, "SIGTERM");
    // Requests are handled in order: once this spawn is back, the kill above was handled.
    await sp.spawn({ ...req, file: "true", args: [] });
    expect(alive(impostor.pid!), "the process now at the reaped pid").to.equal(true);
  });
});
