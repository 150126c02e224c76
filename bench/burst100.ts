// Burst over many functions (issue 15): 1,000 concurrent first requests spread unevenly over 100
// functions never invoked before, each with its own concurrency. Zero errors, and every function
// gets exactly ceil(its requests / its concurrency) instances. Part of bench/run.ts (keys
// burst100.*); alone: `npx tsx bench/burst100.ts` (starts its own platform; FIZZ_BURST100_SCALE=0.2
// for a fifth of the requests and functions, FIZZ_BURST100_HOLD_MS for another hold).
//
// Each function's handler holds every call for HOLD_MS, long enough that every request of the
// burst has reached the gateway before the first is answered (checked: lib/arrivals.ts, keys
// burst100.concurrent and burst100.arrivals); a short handler would free slots that late arrivals
// rightly reuse, and the count would not be about a concurrent burst. The spread repeats a cycle of ten (requests, concurrency) pairs that puts each function just
// under, exactly at and just over a multiple of its concurrency. The instances are counted in the
// poolkeeper's list right after the last answer, on an environment of the bench's own (a warm
// pool of 8, so most instances start on the request path, as they would in a real burst), deleted
// afterwards with its functions.
import path from "node:path";
import { Agent, request } from "undici";
import { mkdirSync } from "node:fs";
import { warmPoolFull } from "./lib/pool";
import { code, startBenchPlatform, type BenchPlatform } from "./lib/platform";
import { ArrivalProbe, arrivalsRow, type ArrivalFigures } from "./lib/arrivals";
import { percentile, round } from "./lib/stats";
import { runIfMain } from "./lib/standalone";

const NS = "default";
const ENV = "bench-burst100";
const POOL = 8;
/**
 * Far above the send spread (first request sent to last): 0.1-0.3 s for 200 requests with the
 * shared 2-core machine at load 20; if 1,000 ever take longer, burst100.concurrent says so.
 */
const HOLD_MS = 3000;
const handler = (holdMs: number) =>
  `module.exports = async () => { await new Promise(r => setTimeout(r, ${holdMs})); return "ok"; };\n`;

/** One cycle of ten functions: [requests, concurrency]; 100 requests, 14 instances per cycle. */
const CYCLE: readonly (readonly [number, number])[] = [
  [1, 4],
  [3, 4],
  [4, 4],
  [6, 4],
  [8, 8],
  [10, 10],
  [12, 10],
  [14, 10],
  [17, 10],
  [25, 25],
];

export interface Burst100Mismatch {
  function: string;
  requests: number;
  concurrency: number;
  instances: number;
  required: number;
}

export interface Burst100Figures {
  requests: number;
  functions: number;
  errors: number;
  instances_exact: boolean;
  instances: number;
  instances_required: number;
  p50_ms: number;
  p99_ms: number;
  /** Functions whose instance count is not ceil(requests / concurrency). */
  mismatches: Burst100Mismatch[];
  /** Error answers by status (or the client error's code), at most a few kinds. */
  error_kinds: Record<string, number>;
  /** How long each call is held in its handler (p50/p99 include it). */
  hold_ms: number;
  /** Every request sent before the first answer: without it instances_exact means nothing. */
  concurrent: boolean;
  arrivals: ArrivalFigures;
}

export interface Burst100Options {
  /** How many cycles of ten functions (10 = 100 functions, 1,000 requests). */
  cycles?: number;
  /** Each call's hold in the handler (HOLD_MS). */
  holdMs?: number;
}

interface Plan {
  name: string;
  requests: number;
  concurrency: number;
}

function plan(cycles: number, tag: string): Plan[] {
  const out: Plan[] = [];
  for (let c = 0; c < cycles; c++)
    CYCLE.forEach(([requests, concurrency], i) =>
      out.push({ name: `burst100-${tag}-${c * CYCLE.length + i}`, requests, concurrency }),
    );
  return out;
}

/** Every request of the plan, interleaved across functions (not function by function). */
function interleave(fns: Plan[]): string[] {
  const left = fns.map((f) => ({ name: f.name, n: f.requests }));
  const urls: string[] = [];
  while (left.some((l) => l.n > 0))
    for (const l of left)
      if (l.n > 0) {
        urls.push(l.name);
        l.n--;
      }
  return urls;
}

async function inBatches<T>(items: T[], width: number, f: (t: T) => Promise<unknown>) {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(f));
}

export async function measureBurst100(
  p: BenchPlatform,
  opts: Burst100Options = {},
): Promise<Burst100Figures> {
  const tag = Date.now().toString(36);
  const fns = plan(opts.cycles ?? 10, tag);
  const holdMs = opts.holdMs ?? HOLD_MS;
  await p.api("POST", `/v1/namespaces/${NS}/environments`, {
    name: ENV,
    spec: { image: "fizz/env-node", poolSize: POOL },
  });
  const agent = new Agent({ connections: 2000, pipelining: 1, headersTimeout: 0, bodyTimeout: 0 });
  try {
    await inBatches(fns, 8, (f) =>
      p.api("POST", `/v1/namespaces/${NS}/functions`, {
        name: f.name,
        spec: {
          environment: ENV,
          code: code("f.js", handler(holdMs)),
          concurrency: f.concurrency,
          maxInstances: Math.ceil(f.requests / f.concurrency) + 10,
          // A slow burst must not see its first instances reaped before they are counted.
          idleTimeoutSeconds: 600,
        },
      }),
    );
    await warmPoolFull(p, ENV, POOL);
    const names = interleave(fns);
    const times: number[] = [];
    const errorKinds: Record<string, number> = {};
    let errors = 0;
    const fail = (kind: string) => {
      errors++;
      errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
    };
    const probe = new ArrivalProbe(p.gatewayUrl, `/function/burst100-${tag}-`);
    await Promise.all(
      names.map(async (name) => {
        const t = performance.now();
        try {
          const res = await request(`${p.gatewayUrl}/function/${name}`, { dispatcher: agent });
          const body = await res.body.text();
          if (res.statusCode !== 200 || body !== "ok") fail(`http_${res.statusCode}`);
        } catch (err) {
          fail((err as { code?: string }).code ?? "client_error");
        }
        times.push(performance.now() - t);
      }),
    ).finally(() => probe.stop());
    const arrivals = probe.finish(names.length);
    const counts = new Map<string, number>();
    for (const i of await p.instances())
      if (i.function && i.function.namespace === NS)
        counts.set(i.function.name, (counts.get(i.function.name) ?? 0) + 1);
    const mismatches: Burst100Mismatch[] = [];
    let instances = 0;
    let required = 0;
    for (const f of fns) {
      const got = counts.get(f.name) ?? 0;
      const want = Math.ceil(f.requests / f.concurrency);
      instances += got;
      required += want;
      if (got !== want)
        mismatches.push({
          function: f.name,
          requests: f.requests,
          concurrency: f.concurrency,
          instances: got,
          required: want,
        });
    }
    return {
      requests: names.length,
      functions: fns.length,
      errors,
      instances_exact: mismatches.length === 0,
      instances,
      instances_required: required,
      p50_ms: round(percentile(times, 50)),
      p99_ms: round(percentile(times, 99)),
      mismatches,
      error_kinds: errorKinds,
      hold_ms: holdMs,
      concurrent: arrivals.concurrent,
      arrivals,
    };
  } finally {
    await agent.close();
    await inBatches(fns, 8, (f) =>
      p.api("DELETE", `/v1/namespaces/${NS}/functions/${f.name}`).catch(() => undefined),
    );
    await p.api("DELETE", `/v1/namespaces/${NS}/environments/${ENV}`).catch(() => undefined);
  }
}

export function burst100Rows(f: Burst100Figures): [string, string, string][] {
  return [
    [
      `burst100 (${f.requests} over ${f.functions} fns): instances (required) / errors`,
      `${f.instances} (${f.instances_required}) / ${f.errors}`,
      "instances = required per function, 0 errors",
    ],
    [
      "burst100 exact / mismatched functions / p50 / p99 ms",
      `${f.instances_exact} / ${f.mismatches.length} / ${f.p50_ms} / ${f.p99_ms}`,
      `exact = true${f.concurrent ? "" : " (NOT concurrent: exactness not meaningful)"}`,
    ],
    arrivalsRow("burst100", f.hold_ms, f.arrivals),
  ];
}

async function standalone(): Promise<Burst100Figures> {
  const root = path.resolve(import.meta.dirname, "..");
  const logFile = path.join(root, "bench/results/burst100-platform.log");
  mkdirSync(path.dirname(logFile), { recursive: true });
  const p = await startBenchPlatform(logFile);
  try {
    const scale = Number(process.env.FIZZ_BURST100_SCALE ?? "1");
    const hold = process.env.FIZZ_BURST100_HOLD_MS;
    return await measureBurst100(p, {
      cycles: Math.max(1, Math.round(10 * scale)),
      ...(hold ? { holdMs: Number(hold) } : {}),
    });
  } finally {
    await p.stop();
  }
}

runIfMain(import.meta.url, standalone, burst100Rows);
