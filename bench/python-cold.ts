// Python cold starts from the warm pool, through the gateway: part of bench/run.ts (keys
// cold.python, cold.python_flask, cold.python_flask_fresh, cold.python_context); alone:
// `node --import tsx bench/python-cold.ts` (`--merge` also writes the figures into
// bench/results/latest.json without re-running the rest). FIZZ_RUNTIMES_DIR, passed on to the
// poolkeeper, measures another copy of the runtimes (a before/after comparison).
//
// A Python instance imports Flask in the background once it is listening (runtimes/python,
// fizz_preload.py, ~200 ms); a pool instance announces readiness only once that is over, so a
// refill counts in the pool (and a sample starts) only when it has no start-up CPU left.
// "Settled" samples wait, after the pool is refilled, until every warm instance has been up for
// SETTLED_MS: the pool as it is when cold starts are not back to back. "Fresh" samples start the
// moment the pool is full again (the poolkeeper hands out the oldest instance), back to back: the
// way cold.python was always measured. Before the announcement waited for the import, a fresh
// sample ran next to the refill's import, and a Flask function could land on an instance whose
// import had not finished.
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { waitFor } from "@fizz/testkit";
import { code, startBenchPlatform, type BenchPlatform } from "./lib/platform";
import { percentile, round } from "./lib/stats";

const QUICK = process.env.FIZZ_BENCH_QUICK === "1";
const SAMPLES = QUICK ? 10 : 50;
const ENV = "python";
const ROOT = path.resolve(import.meta.dirname, "..");

export interface LatencyFigures {
  p50_ms: number;
  p99_ms: number;
  samples: number;
  errors: number;
}

export interface PythonColdFigures {
  /** `def main()` returning a string, no Flask (a plain call), fresh: the figure as it always was. */
  python: LatencyFigures;
  /** A Flask function (`from flask import request`), settled pool. */
  python_flask: LatencyFigures;
  /**
   * The same Flask function, fresh (back to back). The key is kept from when a fresh instance was
   * still importing Flask; a pool instance now counts only once its import is over.
   */
  python_flask_fresh: LatencyFigures;
  /** `def main(context)`, which never touches Flask, fresh. */
  python_context: LatencyFigures;
}

export const PY_HELLO = 'def main():\n    return "Hello, world!\\n"\n';
const PY_FLASK =
  'from flask import request\n\ndef main():\n    return "Hello, " + request.args.get("name", "world") + "!\\n"\n';
const PY_CONTEXT = 'def main(context):\n    return "Hello, world!\\n"\n';

/** Older than this, a warm instance has long finished importing Flask, even on a busy machine. */
const SETTLED_MS = 2000;

async function poolFull(p: BenchPlatform, size: number, settled: boolean): Promise<void> {
  await waitFor(
    async () => {
      const warm = (await p.instances()).filter(
        (i) => i.state === "warm" && i.environment.name === ENV,
      );
      const now = Date.now();
      return (
        warm.length >= size && (!settled || warm.every((i) => now - i.startedAt >= SETTLED_MS))
      );
    },
    { timeoutMs: 60_000, intervalMs: 20, what: `warm pool of ${ENV}` },
  );
}

async function samples(
  p: BenchPlatform,
  pool: number,
  label: string,
  text: string,
  settled: boolean,
): Promise<LatencyFigures> {
  console.log(`cold start from the warm pool (${label}, ${SAMPLES} samples)…`);
  const times: number[] = [];
  let errors = 0;
  for (let i = 0; i < SAMPLES; i++) {
    const name = `cold-${label.replace(/_/g, "-")}-${i}`;
    await p.api("POST", "/v1/namespaces/default/functions", {
      name,
      spec: { environment: ENV, code: code("f.py", text), idleTimeoutSeconds: 5 },
    });
    await poolFull(p, pool, settled);
    const t = performance.now();
    const res = await fetch(`${p.gatewayUrl}/function/${name}`);
    const body = await res.text();
    times.push(performance.now() - t);
    if (res.status !== 200 || !body.startsWith("Hello, world!")) {
      if (++errors <= 3) console.error(`${label} sample ${i}: ${res.status} ${body.slice(0, 300)}`);
    }
  }
  return {
    p50_ms: round(percentile(times, 50)),
    p99_ms: round(percentile(times, 99)),
    samples: times.length,
    errors,
  };
}

/** Every Python cold start figure, on a platform whose "python" environment has `pool` instances. */
export async function measurePythonCold(
  p: BenchPlatform,
  pool: number,
): Promise<PythonColdFigures> {
  return {
    python: await samples(p, pool, "python", PY_HELLO, false),
    python_flask: await samples(p, pool, "python_flask", PY_FLASK, true),
    python_flask_fresh: await samples(p, pool, "python_flask_fresh", PY_FLASK, false),
    python_context: await samples(p, pool, "python_context", PY_CONTEXT, false),
  };
}

export function pythonColdRows(f: PythonColdFigures): [string, string, string][] {
  const row = (what: string, l: LatencyFigures, target: string): [string, string, string] => [
    `cold (warm pool) ${what} p50 / p99 ms`,
    `${l.p50_ms} / ${l.p99_ms}${l.errors ? ` (${l.errors} errors)` : ""}`,
    target,
  ];
  return [
    row("python", f.python, "<= 20 / 50"),
    row("python Flask, pool settled", f.python_flask, "<= 20 / 50"),
    row("python Flask, back to back", f.python_flask_fresh, ""),
    row("python main(context)", f.python_context, "<= 20 / 50"),
  ];
}

async function standalone(): Promise<PythonColdFigures> {
  const POOL = 8;
  const p = await startBenchPlatform(path.join(ROOT, "bench/results/platform-python-cold.log"));
  try {
    await p.api("POST", "/v1/namespaces/default/environments", {
      name: ENV,
      spec: { image: "fizz/env-python", poolSize: POOL },
    });
    await poolFull(p, POOL, true);
    return await measurePythonCold(p, POOL);
  } finally {
    await p.stop();
  }
}

function merge(f: PythonColdFigures): void {
  const json = path.join(ROOT, "bench/results/latest.json");
  const latest = JSON.parse(readFileSync(json, "utf8")) as { cold: Record<string, unknown> };
  Object.assign(latest.cold, f);
  writeFileSync(json, JSON.stringify(latest, null, 2) + "\n");
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  standalone().then(
    (f) => {
      console.log(JSON.stringify(f, null, 2));
      console.log(
        pythonColdRows(f)
          .map((r) => `${r[0]}  ${r[1]}`)
          .join("\n"),
      );
      if (process.argv.includes("--merge")) merge(f);
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
