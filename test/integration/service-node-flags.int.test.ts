import { expect } from "chai";
import { spawnSync } from "node:child_process";
import {
  GATEWAY_SEMI_SPACE_MB,
  POOLKEEPER_INTERRUPT_BUDGET,
  SERVICE_NAMES,
  SERVICE_NODE_FLAGS,
} from "../../scripts/lib/service-build.mjs";

/** Runs `script` in a node with `flags` and V8's optimization trace; its output. */
function traced(flags: string[], script: string): string {
  const r = spawnSync(process.execPath, [...flags, "--trace-opt", "-e", script], {
    encoding: "utf8",
    timeout: 30_000,
  });
  expect(r.status, r.stderr).to.equal(0);
  return r.stdout;
}

// A function run as often as a burst of start-up work runs node's internals: enough bytecode for
// V8's default budget to send it to TurboFan, well under 16 times that.
const BURST = `
function work(a) { let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * 2; return s; }
const a = Array.from({ length: 1000 }, (_, i) => i);
let t = 0; for (let k = 0; k < 10; k++) t += work(a);
`;
// The same function kept busy, as sustained traffic keeps a path hot.
const SUSTAINED = BURST.replace("k < 10", "k < 2000");
const OPTIMIZED = /marking .*<JSFunction work /;

// Short-lived garbage at a high rate, as the proxy makes per request; then V8's new space, in MB.
const CHURN = `
let keep = [];
for (let i = 0; i < 3e6; i++) { keep.push({ a: i, b: "x" + i }); if (keep.length > 20000) keep = []; }
const s = require("v8").getHeapSpaceStatistics().find((x) => x.space_name === "new_space");
console.log(s.space_size / 1048576);
`;

/** The new space's size after CHURN, in MB, in a node with `flags`. */
function newSpaceMb(flags: string[]): number {
  const r = spawnSync(process.execPath, [...flags, "-e", CHURN], {
    encoding: "utf8",
    timeout: 60_000,
  });
  expect(r.status, r.stderr).to.equal(0);
  return Number(r.stdout.trim());
}

/** The Node flags the launcher and the images run each bundled service with (service-build.mjs). */
describe("services' node flags", () => {
  it("are all accepted by this node", () => {
    for (const svc of SERVICE_NAMES) {
      const flags = SERVICE_NODE_FLAGS[svc] ?? [];
      const r = spawnSync(process.execPath, [...flags, "-e", "0"], { encoding: "utf8" });
      expect(r.status, `${svc} ${flags.join(" ")}: ${r.stderr}`).to.equal(0);
      expect(r.stderr, svc).to.equal("");
    }
  });

  it("keep a burst of work in the poolkeeper from TurboFan (its compiler's pages stay out of RSS), not sustained work", () => {
    const poolkeeper = SERVICE_NODE_FLAGS.poolkeeper ?? [];
    expect(poolkeeper).to.include(`--interrupt-budget=${POOLKEEPER_INTERRUPT_BUDGET}`);
    // The control: without the budget the burst is optimized, so the assertion below can fail.
    const withoutBudget = poolkeeper.filter((f) => !f.startsWith("--interrupt-budget"));
    expect(traced(withoutBudget, BURST)).to.match(OPTIMIZED);
    expect(traced(poolkeeper, BURST)).not.to.match(OPTIMIZED);
    expect(traced(poolkeeper, SUSTAINED)).to.match(OPTIMIZED);
  });

  it("cap the gateway's young generation, which otherwise grows with the request rate", () => {
    const gateway = SERVICE_NODE_FLAGS.gateway ?? [];
    expect(gateway).to.include(`--max-semi-space-size=${GATEWAY_SEMI_SPACE_MB}`);
    // The control: V8's own cap is higher, so the bound below can fail.
    const uncapped = newSpaceMb(gateway.filter((f) => !f.startsWith("--max-semi-space-size")));
    expect(uncapped).to.be.above(2 * GATEWAY_SEMI_SPACE_MB);
    expect(newSpaceMb(gateway)).to.be.at.most(2 * GATEWAY_SEMI_SPACE_MB);
  });
});
