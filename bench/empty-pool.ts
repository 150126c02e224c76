// Cold start with an empty pool, through the gateway: each sample creates a Node function on an
// environment with poolSize 0 and times its first GET, so the runtime process starts on the
// request path (the same measurement as bench/run.ts section 3, key cold_empty_pool.node).
// Alone: `npx tsx bench/empty-pool.ts [samples]`; FIZZ_RUNTIMES_DIR, passed on to the
// poolkeeper, measures another copy of the runtimes (a before/after comparison).
import { mkdirSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { code, startBenchPlatform, type BenchPlatform } from "./lib/platform";
import { percentile, round } from "./lib/stats";

const QUICK = process.env.FIZZ_BENCH_QUICK === "1";
const ENV = "node-empty-pool";
/** Every sample of the last measurement, in order (FIZZ_BENCH_VERBOSE=1 prints them). */
let lastTimes: number[] = [];
const HELLO = 'module.exports = async () => ({ status: 200, body: "Hello, world!\\n" });\n';

export interface EmptyPoolFigures {
  p50_ms: number;
  p99_ms: number;
  min_ms: number;
  max_ms: number;
  /** The first sample: the platform's first spawn (outliers there are start-up, not steady). */
  first_ms: number;
  samples: number;
  errors: number;
}

/** Creates its own environment (poolSize 0) and deletes it afterwards. */
export async function measureEmptyPool(
  p: BenchPlatform,
  samples = QUICK ? 5 : 20,
): Promise<EmptyPoolFigures> {
  await p.api("POST", "/v1/namespaces/default/environments", {
    name: ENV,
    spec: { image: "fizz/env-node", poolSize: 0 },
  });
  const times: number[] = [];
  let errors = 0;
  try {
    for (let i = 0; i < samples; i++) {
      const name = `empty-pool-${i}-${Date.now().toString(36)}`;
      await p.api("POST", "/v1/namespaces/default/functions", {
        name,
        spec: { environment: ENV, code: code("f.js", HELLO), idleTimeoutSeconds: 5 },
      });
      const t = performance.now();
      const res = await fetch(`${p.gatewayUrl}/function/${name}`);
      await res.arrayBuffer();
      times.push(performance.now() - t);
      lastTimes = times;
      if (res.status !== 200) errors++;
    }
  } finally {
    await p.api("DELETE", `/v1/namespaces/default/environments/${ENV}`).catch(() => undefined);
  }
  return {
    p50_ms: round(percentile(times, 50)),
    p99_ms: round(percentile(times, 99)),
    min_ms: round(Math.min(...times)),
    max_ms: round(Math.max(...times)),
    first_ms: round(times[0] ?? NaN),
    samples: times.length,
    errors,
  };
}

export function emptyPoolRows(f: EmptyPoolFigures): [string, string, string][] {
  return [
    ["Cold start, empty pool (Node) p50", `${f.p50_ms} ms`, "<= 120 ms"],
    ["Cold start, empty pool (Node) p99", `${f.p99_ms} ms`, "-"],
    ["Cold start, empty pool errors", String(f.errors), "0"],
  ];
}

async function standalone(samples: number): Promise<EmptyPoolFigures> {
  const logFile = path.resolve(import.meta.dirname, "results/empty-pool-platform.log");
  mkdirSync(path.dirname(logFile), { recursive: true });
  const p = await startBenchPlatform(logFile);
  try {
    return await measureEmptyPool(p, samples);
  } finally {
    await p.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  standalone(Number(process.argv[2] ?? (QUICK ? 5 : 20))).then(
    (f) => {
      console.log(JSON.stringify(f));
      if (process.env.FIZZ_BENCH_VERBOSE === "1") console.log(JSON.stringify(lastTimes));
      for (const r of emptyPoolRows(f)) console.log(`${r[0]}  ${r[1]}  (target ${r[2]})`);
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
