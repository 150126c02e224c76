// The bulk path of issue 15 (bench/run.ts, keys apply.*, reported, no target): `fizz spec apply` of
// a spec of N functions, each with its HTTP route (default 10,000; FIZZ_APPLY_FUNCTIONS to change),
// on a platform of its own, the CLI run as users run it (node_modules/.bin/fizz's loader, a child
// process, -o json). Alone: `npx tsx bench/spec-apply.ts` (FIZZ_APPLY_PARALLEL=1 for the writes
// one at a time, as before apply-order.ts).
//
// plan_seconds is a --dry-run of the same spec on the empty platform: start-up, loading and
// checking the files, reading the registry and planning. write_seconds is the apply's wall time
// less that, so mostly the writes. rerun_seconds is a second apply, everything unchanged: what
// checking a deployed spec of that size costs.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { startBenchPlatform } from "./lib/platform";
import { runIfMain } from "./lib/standalone";
import { round } from "./lib/stats";

const ROOT = path.resolve(import.meta.dirname, "..");
const FIZZ = path.join(ROOT, "cli", "bin", "fizz.js");
const SPEC = "bench-apply";
const ENV = "apply-node";

export interface ApplyFigures {
  functions: number;
  /** Objects the spec creates: an environment, the functions and their triggers. */
  objects: number;
  /** --parallel given to apply (16 is its default). */
  parallel: number;
  /** The apply command's wall time, from its start to its exit. */
  seconds: number;
  /** A --dry-run's wall time on the empty platform: loading, reading the registry, planning. */
  plan_seconds: number;
  /** seconds less plan_seconds: the writes. */
  write_seconds: number;
  objects_per_s: number;
  functions_per_s: number;
  /** Objects the writes made per second (write_seconds). */
  write_objects_per_s: number;
  /** A second apply of the same files: every object unchanged. */
  rerun_seconds: number;
  rerun_unchanged: number;
}

export interface ApplyOptions {
  functions?: number;
  parallel?: number;
  logFile?: string;
}

/** A spec directory in `root`: the DeploymentConfig, one environment, N functions and routes. */
async function writeSpec(root: string, n: number): Promise<string> {
  const specs = path.join(root, "specs");
  await mkdir(specs, { recursive: true });
  await writeFile(path.join(root, "f.js"), 'module.exports = async () => "ok";\n');
  await writeFile(
    path.join(specs, "config.yaml"),
    `apiVersion: fizz.dev/v1\nkind: DeploymentConfig\nmetadata: { name: ${SPEC} }\n`,
  );
  await writeFile(
    path.join(specs, "env.yaml"),
    `apiVersion: fizz.dev/v1\nkind: Environment\nmetadata: { name: ${ENV} }\nspec: { image: fizz/env-node, poolSize: 0 }\n`,
  );
  const fns: string[] = [];
  const routes: string[] = [];
  for (let i = 0; i < n; i++) {
    fns.push(
      `apiVersion: fizz.dev/v1\nkind: Function\nmetadata: { name: a-${i} }\n` +
        `spec: { environment: ${ENV}, code: { path: ../f.js }, idleTimeoutSeconds: 30 }\n`,
    );
    routes.push(
      `apiVersion: fizz.dev/v1\nkind: HttpTrigger\nmetadata: { name: a-${i} }\n` +
        `spec: { function: a-${i}, path: /a/${i} }\n`,
    );
  }
  await writeFile(path.join(specs, "functions.yaml"), fns.join("---\n"));
  await writeFile(path.join(specs, "routes.yaml"), routes.join("---\n"));
  return specs;
}

interface Run {
  seconds: number;
  items: Array<{ action: string }>;
}

/** `fizz <args> -o json` as a child process; its wall time and the items it reported. */
function fizz(args: string[], env: Record<string, string>, cwd: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [FIZZ, ...args, "-o", "json"], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code) => {
      const seconds = (performance.now() - t0) / 1000;
      const stderr = Buffer.concat(err).toString();
      if (code !== 0) {
        reject(new Error(`fizz ${args.join(" ")}: exit ${code}: ${stderr.slice(0, 2000)}`));
        return;
      }
      const json = JSON.parse(Buffer.concat(out).toString()) as Run;
      resolve({ seconds, items: json.items });
    });
  });
}

export async function measureApply(opts: ApplyOptions = {}): Promise<ApplyFigures> {
  const n = opts.functions ?? 10_000;
  const parallel = opts.parallel ?? 16;
  const objects = 2 * n + 1;
  const logFile = opts.logFile ?? path.join(tmpdir(), "fizz-apply-platform.log");
  const work = await mkdtemp(path.join(tmpdir(), "fizz-apply-"));
  const p = await startBenchPlatform(logFile);
  try {
    const specs = await writeSpec(work, n);
    const env = { FIZZ_REGISTRY_URL: p.registryUrl, FIZZ_TOKEN: p.adminToken };
    const count = (r: Run, action: string) => r.items.filter((i) => i.action === action).length;

    const plan = await fizz(["spec", "apply", "-f", specs, "--dry-run"], env, work);
    if (count(plan, "create") !== objects)
      throw new Error(`the dry run planned ${count(plan, "create")} creates, not ${objects}`);
    console.log(`apply: ${objects} objects planned in ${round(plan.seconds)} s; applying…`);
    const applied = await fizz(
      ["spec", "apply", "-f", specs, "--parallel", String(parallel)],
      env,
      work,
    );
    if (count(applied, "created") !== objects)
      throw new Error(`apply created ${count(applied, "created")} objects, not ${objects}`);
    const rerun = await fizz(["spec", "apply", "-f", specs], env, work);
    // rerun_seconds is what checking a deployed spec costs only if the rerun wrote nothing: one
    // that did (apply not converging) would pass off its writes as that.
    if (count(rerun, "unchanged") !== objects)
      throw new Error(
        `the rerun found ${count(rerun, "unchanged")} objects unchanged, not ${objects}`,
      );
    const writeSeconds = Math.max(applied.seconds - plan.seconds, 1e-3);
    return {
      functions: n,
      objects,
      parallel,
      seconds: round(applied.seconds),
      plan_seconds: round(plan.seconds),
      write_seconds: round(writeSeconds),
      objects_per_s: round(objects / applied.seconds, 1),
      functions_per_s: round(n / applied.seconds, 1),
      write_objects_per_s: round(objects / writeSeconds, 1),
      rerun_seconds: round(rerun.seconds),
      rerun_unchanged: count(rerun, "unchanged"),
    };
  } finally {
    await p.stop();
    await rm(work, { recursive: true, force: true });
  }
}

export function applyRows(f: ApplyFigures): [string, string, string][] {
  return [
    [
      `apply: fizz spec apply of ${f.functions} functions with routes (${f.objects} objects, --parallel ${f.parallel}): s / objects per s / functions per s`,
      `${f.seconds} / ${f.objects_per_s} / ${f.functions_per_s}`,
      "reported",
    ],
    [
      `apply: of which planning (a --dry-run) / writing s (objects per s); a rerun, all unchanged, s`,
      `${f.plan_seconds} / ${f.write_seconds} (${f.write_objects_per_s}); ${f.rerun_seconds}`,
      "reported",
    ],
  ];
}

runIfMain(
  import.meta.url,
  () => {
    const logFile = path.join(ROOT, "bench/results/apply-platform.log");
    mkdirSync(path.dirname(logFile), { recursive: true });
    return measureApply({
      functions: Number(process.env.FIZZ_APPLY_FUNCTIONS ?? "10000"),
      parallel: Number(process.env.FIZZ_APPLY_PARALLEL ?? "16"),
      logFile,
    });
  },
  applyRows,
);
