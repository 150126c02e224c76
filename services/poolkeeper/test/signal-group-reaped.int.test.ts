import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { signalGroup } from "../src/process-child";
import { canForcePids, impostorAtReapedPid } from "./process-helpers";
import { alive } from "./spawner-harness";

/**
 * A child_process child is reaped by Node before its 'exit' event; from then on its number may be
 * another process's, and one that made itself a group leader (any detached instance does) would
 * take a `kill(-pid)` meant for the instance's group: the kill grace timer fires in the ~200 ms
 * between the reap and the exit's clean-up.
 */
describe("signalGroup: a child_process child reaped before the signal", function () {
  this.timeout(30_000);
  let impostor: ChildProcess | undefined;

  before(function () {
    if (process.getuid?.() !== 0 || !canForcePids()) this.skip(); // the reuse cannot be forced
  });
  afterEach(() => {
    impostor?.kill("SIGKILL");
    impostor = undefined;
  });

  it("does not signal the group that now has the reaped child's number", async function () {
    let child: ChildProcess | undefined;
    impostor = await impostorAtReapedPid(async () => {
      child = spawn("sleep", ["300"], { detached: true, stdio: "ignore" });
      child.kill("SIGKILL");
      await once(child, "exit"); // reaped by Node
      return child.pid!;
    });
    if (!impostor) this.skip(); // the pid was always taken by another process first
    signalGroup(child!, "SIGKILL");
    await new Promise((r) => setTimeout(r, 100));
    expect(alive(impostor.pid!), "the process group now at the reaped pid").to.equal(true);
  });

  it("still signals a live child's whole group", async function () {
    // The leader starts a grandchild in its group and waits: both must go.
    const child = spawn("sh", ["-c", "sleep 300 & echo $!; wait"], {
      detached: true,
      stdio: ["ignore", "pipe", "ignore"],
    });
    const [line] = (await once(child.stdout, "data")) as [Buffer];
    const grandchild = Number(line.toString().trim());
    expect(alive(grandchild)).to.equal(true);
    signalGroup(child, "SIGKILL");
    await once(child, "exit");
    for (let i = 0; i < 50 && alive(grandchild); i++) await new Promise((r) => setTimeout(r, 20));
    expect(alive(grandchild), "the grandchild in the group").to.equal(false);
  });
});
