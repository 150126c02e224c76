// Packages (issue 11) in `npm run bench`: cold starts of functions whose deployment is an archive
// of 1, 10 and 50 MiB, the build time of a Node package with one npm dependency, and the
// poolkeeper's peak RSS while it streams the 50 MiB archive into an instance. Part of bench/run.ts
// (same platform, same run); alone: `node --import tsx bench/packages.ts` (`--merge` also writes
// the figures into bench/results/latest.json and docs/benchmarks.md without re-running the rest).
import { randomBytes } from "node:crypto";
import { createWriteStream, readFileSync, writeFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { once } from "node:events";
import { pathToFileURL } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import type { ArchiveRef } from "@fizz/events";
import { packDirectory } from "@fizz/kit/archive";
import { waitFor } from "@fizz/testkit";
import { rssMb, startBenchPlatform, type BenchPlatform } from "./lib/platform";
import { percentile, round } from "./lib/stats";

const QUICK = process.env.FIZZ_BENCH_QUICK === "1";
const MIB = 2 ** 20;
/** Deployment sizes and samples per size (each sample a new function, so each a cold start). */
const SIZES = [
  { mib: 1, samples: QUICK ? 3 : 10 },
  { mib: 10, samples: QUICK ? 3 : 10 },
  { mib: 50, samples: QUICK ? 2 : 5 },
] as const;
const BUILD_SAMPLES = QUICK ? 1 : 3;
const RSS_INTERVAL_MS = 10;
const NS = "default";

interface LatencyFigures {
  p50_ms: number;
  p99_ms: number;
  samples: number;
  errors?: number;
}

/** What `packages` in bench/results/latest.json holds. */
export interface PackageFigures {
  cold_1mib: LatencyFigures;
  cold_10mib: LatencyFigures;
  cold_50mib: LatencyFigures;
  /** Canonical archive sizes actually stored, per deployment. */
  deployment_bytes: Record<string, number>;
  /** Median seconds from the start of the source upload to buildState=succeeded. */
  build_node_one_dep_s: number;
  build_node_one_dep_samples_s: number[];
  /** Highest VmRSS of the poolkeeper during any 50 MiB cold start, and right before them. */
  poolkeeper_peak_rss_mb_50mib: number;
  poolkeeper_idle_rss_mb: number;
  /** How many VmRSS readings the peak is the highest of. */
  poolkeeper_rss_samples_50mib: number;
  /** Why build_node_one_dep_s is missing (NaN), when the build part failed. */
  build_error?: string;
}

/** Python function of the deployment: answers with the data file's size (proves it was unpacked). */
const MAIN_PY = `import os

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data.bin")


def main():
    return "ok %d\\n" % os.path.getsize(_DATA)
`;

/** A deployment of about `mib` MiB: main.py and random (incompressible) bytes. */
async function makeDeployment(
  work: string,
  mib: number,
): Promise<{ file: string; dataBytes: number }> {
  const dir = path.join(work, `deploy-${mib}`);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "main.py"), MAIN_PY);
  // Leave room for the tar headers and gzip's framing, so the archive is about `mib` MiB.
  const dataBytes = mib * MIB - 4096;
  const out = createWriteStream(path.join(dir, "data.bin"));
  for (let left = dataBytes; left > 0; left -= MIB) {
    if (!out.write(randomBytes(Math.min(MIB, left)))) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
  const file = path.join(work, `deploy-${mib}.tar.gz`);
  await packDirectory(dir, file);
  await rm(dir, { recursive: true, force: true });
  return { file, dataBytes };
}

async function warmPoolFull(p: BenchPlatform, env: string, size: number) {
  await waitFor(
    async () =>
      (await p.instances()).filter((i) => i.state === "warm" && i.environment.name === env)
        .length >= size,
    { timeoutMs: 60_000, intervalMs: 20, what: `warm pool of ${env}` },
  );
}

/** VmRSS of `pid` every RSS_INTERVAL_MS until stopped; returns the highest seen. */
function sampleRss(pid: number): { stop(): Promise<{ peak: number; samples: number }> } {
  let peak = 0;
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const mb = await rssMb(pid);
      samples++;
      if (mb > peak) peak = mb;
      await sleep(RSS_INTERVAL_MS);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { peak, samples };
    },
  };
}

function latency(samples: number[], errors: number): LatencyFigures {
  return {
    p50_ms: round(percentile(samples, 50)),
    p99_ms: round(percentile(samples, 99)),
    samples: samples.length,
    errors,
  };
}

async function getPackage(p: BenchPlatform, name: string) {
  return (await p.api("GET", `/v1/namespaces/${NS}/packages/${name}`)) as {
    status?: { buildState?: string; message?: string; buildLog?: string };
  };
}

/** Seconds from the source upload's start until the registry reports the build succeeded. */
async function timeBuild(p: BenchPlatform, work: string, name: string): Promise<number> {
  const src = path.join(work, name);
  await mkdir(src, { recursive: true });
  await writeFile(
    path.join(src, "package.json"),
    JSON.stringify({ name, version: "1.0.0", main: "index.js", dependencies: { ms: "2.1.3" } }),
  );
  // A different source per sample: nothing can be reused by digest.
  await writeFile(
    path.join(src, "index.js"),
    `// ${name} ${Date.now()}\nconst ms = require("ms");\nmodule.exports = async () => ms(60000);\n`,
  );
  const file = `${src}.tar.gz`;
  await packDirectory(src, file);
  const t0 = performance.now();
  const source = await p.upload(NS, "source", file);
  await p.api("POST", `/v1/namespaces/${NS}/packages`, {
    name,
    spec: { environment: "nodejs", source },
  });
  for (;;) {
    const st = (await getPackage(p, name)).status;
    if (st?.buildState === "succeeded") return (performance.now() - t0) / 1000;
    if (st?.buildState === "failed")
      throw new Error(`build of ${name} failed: ${st.message}\n${st.buildLog?.slice(-2000)}`);
    // The builder's own time limit is 300 s by default.
    if (performance.now() - t0 > 360_000)
      throw new Error(`build of ${name} did not finish in 360 s (buildState ${st?.buildState})`);
    await sleep(50);
  }
}

async function call(url: string): Promise<{ ms: number; status: number; text: string }> {
  const t = performance.now();
  const res = await fetch(url, { signal: AbortSignal.timeout(180_000) });
  const text = await res.text();
  return { ms: performance.now() - t, status: res.status, text };
}

/**
 * Needs environments `python` and `nodejs` with warm pools of `poolSize` (bench/run.ts creates
 * them). Each cold sample: a new function on the size's package, the pool refilled, then one GET
 * through the gateway, timed at the client. The poolkeeper keeps no archive cache, so every
 * sample streams the whole deployment from the Object Store into the instance.
 */
export async function measurePackages(p: BenchPlatform, poolSize: number): Promise<PackageFigures> {
  const work = await mkdtemp(path.join(tmpdir(), "fizz-bench-pkg-"));
  try {
    const cold: Record<string, LatencyFigures> = {};
    const sizes: Record<string, number> = {};
    let idle = NaN;
    let peak = 0;
    let rssSamples = 0;
    for (const { mib, samples } of SIZES) {
      console.log(`packages: cold start, ${mib} MiB deployment (${samples} samples)…`);
      const { file, dataBytes } = await makeDeployment(work, mib);
      const archive: ArchiveRef = await p.upload(NS, "deployment", file);
      sizes[`${mib}mib`] = archive.size;
      const pkg = `pkg-${mib}mib`;
      await p.api("POST", `/v1/namespaces/${NS}/packages`, {
        name: pkg,
        spec: { environment: "python", deployment: archive },
      });
      const times: number[] = [];
      let errors = 0;
      for (let i = 0; i < samples; i++) {
        const name = `pkg-${mib}mib-${i}`;
        await p.api("POST", `/v1/namespaces/${NS}/functions`, {
          name,
          spec: { environment: "python", package: { name: pkg }, idleTimeoutSeconds: 5 },
        });
        await warmPoolFull(p, "python", poolSize);
        const pid = p.pids.poolkeeper!;
        if (mib === 50 && i === 0) idle = await rssMb(pid);
        const rss = mib === 50 ? sampleRss(pid) : undefined;
        const r = await call(`${p.gatewayUrl}/function/${name}`);
        if (rss) {
          const r = await rss.stop();
          peak = Math.max(peak, r.peak);
          rssSamples += r.samples;
        }
        if (r.status !== 200 || r.text !== `ok ${dataBytes}\n`) {
          errors++;
          console.error(`  ${name}: ${r.status} ${r.text.slice(0, 300)}`);
        }
        times.push(r.ms);
      }
      cold[`${mib}mib`] = latency(times, errors);
      console.log(`  ${JSON.stringify(cold[`${mib}mib`])}`);
    }

    console.log(`packages: build of a Node package with one dependency (${BUILD_SAMPLES})…`);
    const builds: number[] = [];
    let buildError: string | undefined;
    try {
      for (let i = 0; i < BUILD_SAMPLES; i++)
        builds.push(await timeBuild(p, work, `build-ms-${i}`));
      // The built deployment must run: a function on the last package answers with ms(60000).
      await p.api("POST", `/v1/namespaces/${NS}/functions`, {
        name: "built-ms",
        spec: { environment: "nodejs", package: { name: `build-ms-${BUILD_SAMPLES - 1}` } },
      });
      const built = await call(`${p.gatewayUrl}/function/built-ms`);
      if (built.status !== 200 || !built.text.includes("1m"))
        throw new Error(`the built package does not answer: ${built.status} ${built.text}`);
    } catch (err) {
      // The cold figures stand on their own: keep them, say why the build has none.
      buildError = err instanceof Error ? err.message : String(err);
      console.error(`packages: build not measured: ${buildError}`);
    }

    return {
      cold_1mib: cold["1mib"]!,
      cold_10mib: cold["10mib"]!,
      cold_50mib: cold["50mib"]!,
      deployment_bytes: sizes,
      build_node_one_dep_s: round(percentile(builds, 50)),
      build_node_one_dep_samples_s: builds.map((b) => round(b)),
      poolkeeper_peak_rss_mb_50mib: peak,
      poolkeeper_idle_rss_mb: idle,
      poolkeeper_rss_samples_50mib: rssSamples,
      ...(buildError !== undefined ? { build_error: buildError.slice(0, 4000) } : {}),
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Rows for the benchmark table (bench/run.ts's render and the --merge below). */
export function packageRows(
  f: PackageFigures | undefined,
  error?: string,
): [string, string, string][] {
  if (!f) return [["packages: not measured", error?.split("\n")[0]?.slice(0, 120) ?? "", ""]];
  const c = (x: LatencyFigures) =>
    `${x.p50_ms} / ${x.p99_ms}${x.errors ? ` (${x.errors} errors)` : ""}`;
  return [
    ["packages: cold (warm pool) python 1 MiB p50 / p99 ms", c(f.cold_1mib), ""],
    ["packages: cold (warm pool) python 10 MiB p50 / p99 ms", c(f.cold_10mib), ""],
    ["packages: cold (warm pool) python 50 MiB p50 / p99 ms", c(f.cold_50mib), ""],
    [
      "packages: build node + ms@2.1.3, upload to succeeded s",
      f.build_error !== undefined
        ? `failed: ${f.build_error.split("\n")[0]?.slice(0, 100)}`
        : `${f.build_node_one_dep_s} (${f.build_node_one_dep_samples_s.join(", ")})`,
      "",
    ],
    [
      "packages: poolkeeper RSS MB idle / peak during 50 MiB",
      `${f.poolkeeper_idle_rss_mb} / ${f.poolkeeper_peak_rss_mb_50mib}`,
      "streamed, not buffered",
    ],
  ];
}

/** The method, as a section of docs/benchmarks.md. */
export function packagesSection(): string {
  return `## Packages

Method (bench/packages.ts, in the same run as the figures above; alone:
\`node --import tsx bench/packages.ts --merge\`). Cold figures: a Python deployment of main.py and
a file of random (incompressible) bytes, so the stored canonical tar.gz is about 1, 10 and 50 MiB
(keys \`packages.deployment_bytes\`), uploaded with \`POST /v1/namespaces/default/archives?use=deployment\`,
one package per size (\`spec.deployment\`); each sample a new function on it (\`spec.package\`), the
warm pool (8) refilled, then one GET through the gateway timed at the client (10 samples for 1 and
10 MiB, 5 for 50 MiB; 3/3/2 in quick mode). The poolkeeper caches no archive: each sample streams
the whole deployment from the Object Store into the instance, which checks its digest and unpacks it.
Build: a Node source (package.json with the dependency ms@2.1.3, no lock file, so
\`npm install --omit=dev\` from the npm registry) uploaded with \`use=source\`, a package created
with \`spec.source\`, timed from the upload's start until the registry reports
\`buildState=succeeded\` (${BUILD_SAMPLES} samples, median; a function on the last one must answer).
Memory: the poolkeeper's VmRSS (/proc/<pid>/status) every ${RSS_INTERVAL_MS} ms during each 50 MiB
cold start; the peak of all of them, and the value right before the first.
`;
}

/** Table rows parsed back from docs/benchmarks.md (columns are separated by 2+ spaces). */
function mergeDocs(text: string, rows: [string, string, string][]): string {
  const lines = text.split("\n");
  const open = lines.indexOf("```");
  const close = lines.indexOf("```", open + 1);
  if (open < 0 || close < 0) return `${text}\n${packagesSection()}`;
  const parsed = lines
    .slice(open + 1, close)
    .filter((l) => l.trim() && !l.startsWith("packages"))
    .map((l) => {
      const [a = "", b = "", c = ""] = l.trimEnd().split(/\s{2,}/);
      return [a, b, c] as [string, string, string];
    });
  let at = parsed.findIndex((r) => r[0].startsWith("kill -9") || r[0].startsWith("memory"));
  if (at < 0) at = parsed.length;
  parsed.splice(at, 0, ...rows);
  const wa = Math.max(...parsed.map((r) => r[0].length));
  const wb = Math.max(...parsed.map((r) => r[1].length));
  const table = parsed.map(([a, b, c]) => `${a.padEnd(wa)}  ${b.padEnd(wb)}  ${c}`);
  let rest = lines.slice(close).join("\n");
  // The method section: replaced where it is, else put right after the table.
  const start = rest.indexOf("\n## Packages\n");
  if (start >= 0) {
    const next = rest.indexOf("\n## ", start + 1);
    rest =
      next >= 0 ? rest.slice(0, start) + rest.slice(next) : rest.slice(0, start).trimEnd() + "\n";
  }
  const afterFence = rest.indexOf("\n") + 1;
  rest = `${rest.slice(0, afterFence)}\n${packagesSection()}${rest.slice(afterFence)}`;
  return [...lines.slice(0, open + 1), ...table, rest].join("\n");
}

const ROOT = path.resolve(import.meta.dirname, "..");

function merge(f: PackageFigures): void {
  const json = path.join(ROOT, "bench/results/latest.json");
  const latest = JSON.parse(readFileSync(json, "utf8")) as Record<string, unknown>;
  latest.packages = f;
  latest.packages_date = new Date().toISOString();
  latest.packages_quick = QUICK;
  writeFileSync(json, JSON.stringify(latest, null, 2) + "\n");
  const md = path.join(ROOT, "docs/benchmarks.md");
  writeFileSync(md, mergeDocs(readFileSync(md, "utf8"), packageRows(f)));
}

async function standalone(): Promise<PackageFigures> {
  const logFile = path.join(ROOT, "bench/results/platform-packages.log");
  const p = await startBenchPlatform(logFile);
  try {
    const POOL = 8;
    for (const [name, image] of [
      ["nodejs", "fizz/env-node"],
      ["python", "fizz/env-python"],
    ] as const) {
      await p.api("POST", `/v1/namespaces/${NS}/environments`, {
        name,
        spec: { image, poolSize: POOL },
      });
    }
    await warmPoolFull(p, "nodejs", POOL);
    await warmPoolFull(p, "python", POOL);
    return await measurePackages(p, POOL);
  } finally {
    await p.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  standalone().then(
    (f) => {
      console.log(JSON.stringify(f, null, 2));
      const rows = packageRows(f);
      console.log(rows.map((r) => `${r[0]}  ${r[1]}`).join("\n"));
      if (process.argv.includes("--merge")) merge(f);
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
