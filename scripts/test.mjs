// `npm test`: set-up if needed, then unit, integration, end-to-end, security (each attack of
// issue 9, refused), fault (kill -9 each component
// under load, a few minutes) and (when k8s-lite is built)
// Kubernetes suites, each against real nats-server / redis-server / kube-apiserver instances the
// tests start themselves on random ports. `npm test -- <stage>` runs one stage.
import { spawn, spawnSync } from "node:child_process";
import path from "node:path";
import { ensureBinaries, ensureNodeModules, ROOT } from "./lib/prereqs.mjs";

try {
  ensureNodeModules();
  ensureBinaries(console.error, { forTests: true });
} catch (err) {
  console.error(`fizz: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
// Go, PHP, Ruby and C# (php-cli, ruby, ruby-rack, mono-*; their prepare scripts): an environment
// that cannot be made ready is named here, and its tests fail saying why.
{
  const { ensureRuntimes } = await import("./lib/runtimes.mjs");
  await ensureRuntimes();
}

/** Largest part of a stage's failure list kept for the summary (the rest is in the log above). */
const FAILURES_KEPT = 12_000;

const only = process.argv[2];
const stages = ["unit", "integration", "e2e", "security", "fault", "k8s"].filter(
  (s) => !only || s === only,
);
/** @type {{ stage: string; failures: string }[]} */
const failed = [];
for (const stage of stages) {
  const env = { ...process.env };
  if (stage === "k8s") {
    const built = spawnSync("bash", [path.join(ROOT, "scripts/build-k8s-lite.sh"), "--cached"], {
      encoding: "utf8",
    });
    if (built.status !== 0) {
      console.log(
        "\n=== k8s tests: SKIPPED ===\n" +
          "k8s-lite (the real kube-apiserver these suites need) is not built on this machine.\n" +
          "Build it once with `scripts/build-k8s-lite.sh` (about 9 minutes on 2 cores), then `npm run test:k8s`.",
      );
      if (only === "k8s") failed.push({ stage, failures: "" });
      continue;
    }
    env.FIZZ_K8S_LITE_BIN = built.stdout.trim();
  }
  console.log(`\n=== ${stage} tests ===`);
  const { status, failures } = await runMocha(stage, env);
  if (status !== 0) failed.push({ stage, failures });
}
if (failed.length) {
  // The failures again, last: a CI log is often read from its tail only, and the stages after
  // the failing one push mocha's own failure list far up.
  for (const { stage, failures } of failed)
    if (failures) console.error(`\nfizz: ${stage} failures:\n${failures}`);
  console.error(`\nfizz: failed stages: ${failed.map((f) => f.stage).join(", ")}`);
  process.exit(1);
}
console.log("\nfizz: all test stages passed");

/**
 * Runs one stage's mocha, its output passed through as it comes, and keeps what follows mocha's
 * "N failing" line (its failure list, printed at the end of the run) for the summary.
 * @param {string} stage
 * @param {NodeJS.ProcessEnv} env
 * @returns {Promise<{ status: number; failures: string }>}
 */
function runMocha(stage, env) {
  return new Promise((resolve) => {
    const child = spawn("npx", ["mocha", "--config", `.mocharc.${stage}.cjs`], {
      cwd: ROOT,
      stdio: ["inherit", "pipe", "inherit"],
      env,
    });
    // A stage prints a few MB at most: kept whole, so a long failure list is found too.
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      process.stdout.write(chunk);
      out += chunk;
    });
    child.on("close", (code) => {
      const at = out.search(/^ {2}\d+ failing/m);
      const failures = at < 0 ? "" : out.slice(at, at + FAILURES_KEPT).trimEnd();
      // A stage killed by a signal has no code: failed.
      resolve({ status: code ?? 1, failures });
    });
  });
}
