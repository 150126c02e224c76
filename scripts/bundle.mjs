// Bundles each service into one ESM file (dist/<service>.mjs) for container images: no tsx, no
// node_modules at run time, fast start. `node scripts/bundle.mjs [service...]`.
import { build } from "esbuild";
import path from "node:path";
import { ROOT } from "./lib/prereqs.mjs";

const all = ["registry", "scheduler", "poolkeeper", "gateway", "kubewatcher"];
const wanted = process.argv.slice(2).length ? process.argv.slice(2) : all;
for (const svc of wanted) {
  if (!all.includes(svc)) throw new Error(`unknown service "${svc}"; one of ${all.join(", ")}`);
  await build({
    entryPoints: [path.join(ROOT, "services", svc, "src", "main.ts")],
    outfile: path.join(ROOT, "dist", `${svc}.mjs`),
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    // Some dependencies still call require(); give the ESM bundle one.
    banner: {
      js: "import { createRequire as __fizzRequire } from 'node:module'; const require = __fizzRequire(import.meta.url);",
    },
    logLevel: "warning",
  });
  console.log(`dist/${svc}.mjs`);
}
