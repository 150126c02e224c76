import { expect } from "chai";
import { hasCapability, REFILL_NICE, StartPriority } from "../src/instance-launch";

/** A child as StartPriority sees it: reaped once exitCode or signalCode is set. */
function child(pid = 4242): { pid: number; exitCode: number | null; signalCode: null } {
  return { pid, exitCode: null, signalCode: null };
}

/** StartPriority's decisions, with the /proc/<pid>/autogroup writes recorded instead of made. */
describe("refill start priority (process backend)", () => {
  let writes: Array<[number, number]>;
  const priority = (ok = true) =>
    new StartPriority({
      enabled: true,
      write: (pid, nice) => {
        writes.push([pid, nice]);
        return ok;
      },
    });

  beforeEach(() => {
    writes = [];
  });

  it("lowers a refill and restores it once, at ready or when the window ends", async () => {
    const p = priority();
    const restore = p.lower(child(), 60_000);
    restore();
    restore();
    expect(writes).to.deep.equal([
      [4242, REFILL_NICE],
      [4242, 0],
    ]);
    writes = [];
    p.lower(child(7), 1);
    await new Promise((r) => setTimeout(r, 20));
    expect(writes).to.deep.equal([
      [7, REFILL_NICE],
      [7, 0],
    ]);
  });

  it("never writes to the pid of a child already reaped: the pid may be another session's by then", async () => {
    const p = priority();
    const c = child();
    const restore = p.lower(c, 60_000);
    c.exitCode = 1; // reaped (a failed start, a kill): its pid is free for reuse
    restore();
    const timed = child(7);
    p.lower(timed, 1);
    timed.exitCode = 0;
    await new Promise((r) => setTimeout(r, 20));
    expect(writes).to.deep.equal([
      [4242, REFILL_NICE],
      [7, REFILL_NICE],
    ]);
  });

  it("does nothing when disabled, or when lowering failed", () => {
    new StartPriority({ enabled: false, write: () => true }).lower(child(), 1)();
    const p = priority(false);
    p.lower(child(), 60_000)();
    // The failed lowering is the only write: nothing to restore.
    expect(writes).to.deep.equal([[4242, REFILL_NICE]]);
  });

  it("needs CAP_SYS_ADMIN, not only uid 0: without it the kernel refuses a write within 100 ms of another", () => {
    // A default container's root: every capability but CAP_SYS_ADMIN (bit 21) among the usual.
    const container =
      "Name:\tnode\nCapInh:\t0\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n";
    const full = "CapEff:\t000001ffffffffff\n";
    expect(hasCapability(container, 21)).to.equal(false);
    expect(hasCapability(full, 21)).to.equal(true);
    expect(hasCapability("CapEff:\t0000000000200000\n", 21)).to.equal(true);
    expect(hasCapability("no such line", 21)).to.equal(false);
  });
});
