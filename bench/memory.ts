// Control-plane memory: each service's RSS once the warm pools are full (idle) and halfway through
// a warm wrk run through the gateway (load), measured as bench/run.ts measures them, on the
// platform as `npm start` runs it. `npx tsx bench/memory.ts` (FIZZ_FROM_SOURCE=1: the services
// from their TypeScript sources through tsx, as before they were bundled; FIZZ_BENCH_QUICK=1:
// a 3 s load).
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { MEMORY_SETTLED_AFTER_MS } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { wrk } from "./lib/load";
import { code, rssMb, startBenchPlatform, type BenchPlatform } from "./lib/platform";

const ROOT = path.resolve(import.meta.dirname, "..");
const IDLE_TARGET_MB = 60;
const LOAD_TARGET_MB = 90;

export interface MemoryFigures {
  /** `<service>_idle_rss_mb` and `<service>_load_rss_mb`, as in latest.json's memory. */
  [key: string]: number;
}

async function poolFull(p: BenchPlatform, env: string, size: number) {
  await waitFor(
    async () =>
      (await p.instances()).filter((i) => i.state === "warm" && i.environment.name === env)
        .length >= size,
    { timeoutMs: 60_000, intervalMs: 50, what: `warm pool of ${env}` },
  );
}

/**
 * Each service's idle RSS: sampled once every service is at least MEMORY_SETTLED_AFTER_MS old
 * (kit's settling collections have run; before that the figure is start-up garbage, not what an
 * idle platform holds), three times a second apart, the median of each. `startedAt`: when the
 * platform was launched (its services are older than that).
 */
export async function idleRss(p: BenchPlatform, startedAt: number): Promise<MemoryFigures> {
  await sleep(Math.max(0, startedAt + MEMORY_SETTLED_AFTER_MS - Date.now()));
  const samples: Record<string, number[]> = {};
  for (let i = 0; i < 3; i++) {
    if (i > 0) await sleep(1000);
    for (const [svc, pid] of Object.entries(p.pids)) (samples[svc] ??= []).push(await rssMb(pid));
  }
  const figures: MemoryFigures = {};
  for (const [svc, xs] of Object.entries(samples))
    figures[`${svc}_idle_rss_mb`] = xs.sort((a, b) => a - b)[1] ?? NaN;
  return figures;
}

/**
 * Starts a platform, fills a Node and a Python pool of `pool`, samples every service's RSS, then
 * runs wrk against a warm Node function through the gateway and samples again halfway through.
 */
export async function measureMemory(
  opts: { pool?: number; seconds?: number; connections?: number } = {},
): Promise<MemoryFigures> {
  const pool = opts.pool ?? 8;
  const seconds = opts.seconds ?? 10;
  const p = await startBenchPlatform(path.join(ROOT, "bench/results/memory-platform.log"));
  const startedAt = Date.now();
  let figures: MemoryFigures = {};
  try {
    for (const [name, image] of [
      ["nodejs", "fizz/env-node"],
      ["python", "fizz/env-python"],
    ] as const)
      await p.api("POST", "/v1/namespaces/default/environments", {
        name,
        spec: { image, poolSize: pool },
      });
    await poolFull(p, "nodejs", pool);
    await poolFull(p, "python", pool);
    figures = await idleRss(p, startedAt);

    await p.api("POST", "/v1/namespaces/default/functions", {
      name: "warm",
      spec: {
        environment: "nodejs",
        code: code("f.js", 'module.exports = async () => ({ status: 200, body: "Hello!\\n" });\n'),
        concurrency: 1000,
        maxInstances: 1,
      },
    });
    await p.api("POST", "/v1/namespaces/default/httptriggers", {
      name: "warm",
      spec: { function: "warm", path: "/warm" },
    });
    const url = `${p.gatewayUrl}/warm`;
    await waitFor(
      async () =>
        (await fetch(url).then(
          (r) => r.arrayBuffer(),
          () => null,
        )) !== null,
      {
        timeoutMs: 20_000,
        what: "the warm function",
      },
    );
    const connections = opts.connections ?? 50;
    await wrk(url, { connections, seconds: Math.min(seconds, 5) });
    const sampling = (async () => {
      await sleep((seconds * 1000) / 2);
      for (const [svc, pid] of Object.entries(p.pids))
        figures[`${svc}_load_rss_mb`] = await rssMb(pid);
    })();
    const run = await wrk(url, { connections, seconds });
    await sampling;
    figures.load_rps = Math.round(run.rps);
    figures.load_errors = run.errors;
    return figures;
  } finally {
    await p.stop();
  }
}

/** Rows for bench/run.ts's table: each service idle and under load against its target. */
export function memoryRows(f: MemoryFigures): [string, string, string][] {
  const rows: [string, string, string][] = [];
  for (const key of Object.keys(f).sort()) {
    const m = /^(.+)_(idle|load)_rss_mb$/.exec(key);
    if (!m) continue;
    const target = m[2] === "idle" ? IDLE_TARGET_MB : LOAD_TARGET_MB;
    rows.push([`memory ${key}`, String(f[key]), `<= ${target}`]);
  }
  return rows;
}

if (process.argv[1] && import.meta.filename === path.resolve(process.argv[1])) {
  const figures = await measureMemory({
    seconds: process.env.FIZZ_BENCH_QUICK === "1" ? 3 : 10,
  });
  for (const [label, value, target] of memoryRows(figures))
    console.log(`${label.padEnd(36)} ${value.padStart(8)}  ${target}`);
  console.log(`load ${figures.load_rps} req/s, ${figures.load_errors} errors`);
  process.exit(0);
}
