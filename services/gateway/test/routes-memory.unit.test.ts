import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import type { MemoryProbe } from "./routes-memory-probe";

/**
 * What the gateway's heap holds per registered function (the scale bench: 10,000 functions, each
 * with an HTTP trigger, all in one gateway). It held the decoded registry objects whole, an
 * eager Set and queue array per function's lease state, a closure per trigger route and two maps
 * and a set of route bookkeeping: 3.1 KB per function here (47-54 MB of heap at 10,000 in the
 * bench, against 15-22 MB for one route, and more GC work under load); 1.24 KB since. Heap use is
 * counted after full collections, so the figure does not depend on the machine's speed or load;
 * and in a process of its own (routes-memory-probe.ts), so not on what other tests of the unit
 * stage's single mocha process leave running.
 */
const N = 4000;

describe("route table memory per function", () => {
  it(`holds under 1,600 bytes of heap per function with its trigger (${N} of each)`, async function () {
    // A node process with tsx to start: seconds on a loaded machine, beyond the stage's 10 s default.
    this.timeout(120_000);
    const probe = path.resolve(import.meta.dirname, "routes-memory-probe.ts");
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--expose-gc", "--import", "tsx", probe, String(N)],
      { cwd: import.meta.dirname, timeout: 110_000 },
    );
    const m = JSON.parse(stdout.trim().split("\n").at(-1)!) as MemoryProbe;
    // Still all there: every route answers, every function has its lease state.
    expect(m.lastTrigger).to.equal(`default/s-${N - 1}`);
    expect(m.functionRouteIsState).to.equal(true);
    expect(m.states).to.equal(N);
    expect(m.warmLoaded).to.equal(true);
    // 3,000 per function before: the registry objects whole, eager lease state, closures.
    expect(m.perFunction, `heap bytes per function`).to.be.below(1600);
  });
});
