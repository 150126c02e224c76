// `npm test`: set-up if needed, then unit, integration and end-to-end suites, each against real
// nats-server / redis-server instances the tests start on random ports.
import { spawnSync } from "node:child_process";
import { ensureBinaries, ensureNodeModules, ROOT } from "./lib/prereqs.mjs";

try {
  ensureNodeModules();
  ensureBinaries();
} catch (err) {
  console.error(`fizz: ${err.message}`);
  process.exit(1);
}

const only = process.argv[2];
const stages = ["unit", "integration", "e2e"].filter((s) => !only || s === only);
let failed = [];
for (const stage of stages) {
  console.log(`\n=== ${stage} tests ===`);
  const r = spawnSync("npx", ["mocha", "--config", `.mocharc.${stage}.cjs`], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) failed.push(stage);
}
if (failed.length) {
  console.error(`\nfizz: failed stages: ${failed.join(", ")}`);
  process.exit(1);
}
console.log("\nfizz: all test stages passed");
