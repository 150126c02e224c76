// When a pool refill skips its warm-up (src/warm-up-mode.mjs): the rule alone.
import { expect } from "chai";
import { BUSY_RATIO, busy, decideWarmUp } from "../src/warm-up-mode.mjs";

describe("node runtime: warm-up on a busy machine", () => {
  it("counts a start as busy only when its wall time is over BUSY_RATIO times its CPU time", () => {
    expect(busy(70, 65)).to.equal(false); // quiet: about as much CPU as wall time
    expect(busy(BUSY_RATIO * 65, 65)).to.equal(false);
    expect(busy(BUSY_RATIO * 65 + 1, 65)).to.equal(true);
    expect(busy(700, 65)).to.equal(true); // a refill at its start-up niceness behind requests
  });

  it("applies the rule to a process backend refill only (unset, with a readiness pipe)", () => {
    const isBusy = () => true;
    const quiet = () => false;
    expect(decideWarmUp(undefined, "3", isBusy)).to.equal(false);
    expect(decideWarmUp(undefined, "3", quiet)).to.equal(true);
    // A kubernetes pod has no pipe: slow by its own CPU limit, it warms up as before.
    expect(decideWarmUp(undefined, undefined, isBusy)).to.equal(true);
    expect(decideWarmUp(undefined, "", isBusy)).to.equal(true);
    expect(decideWarmUp("1", "3", isBusy)).to.equal(true);
    expect(decideWarmUp("0", undefined, quiet)).to.equal(false);
    expect(decideWarmUp("0", "3", quiet)).to.equal(false);
  });
});
