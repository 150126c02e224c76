// Burst to one function (bench/run.ts section 4, keys burst.*): 200 concurrent first requests to a
// new function with concurrency 50, which needs exactly ceil(200 / 50) = 4 instances.
//
// Each call is held HOLD_MS in the handler, so that every request has reached the gateway before
// the first is answered: with a short handler (it was 20 ms) the first instance, taken from the
// warm pool in a few ms, answered its first calls while the last of the 200 connections were still
// opening, the late requests rightly reused the freed slots, and the count (3 of 4) was about a
// stream of requests, not a burst. Whether the burst was concurrent is measured, not assumed
// (lib/arrivals.ts): burst.concurrent. Alone: `npx tsx bench/burst.ts` (its own platform;
// FIZZ_BURST_HOLD_MS for another hold).
import { mkdirSync } from "node:fs";
import path from "node:path";
import { Agent, request } from "undici";
import { ArrivalProbe, arrivalsRow, type ArrivalFigures } from "./lib/arrivals";
import { code, startBenchPlatform, type BenchPlatform } from "./lib/platform";
import { warmPoolFull } from "./lib/pool";
import { runIfMain } from "./lib/standalone";
import { percentile, round } from "./lib/stats";

const NAME = "burst";
const REQUESTS = 200;
const CONCURRENCY = 50;
/** Far above the send spread of the 200 requests: 0.1-0.4 s, the shared 2-core machine at load 20. */
const HOLD_MS = 2000;

export interface BurstFigures {
  requests: number;
  concurrency: number;
  instances: number;
  instances_required: number;
  errors: number;
  p99_ms: number;
  p50_ms: number;
  /** How long each call is held in its handler (p50/p99 include it). */
  hold_ms: number;
  /** Every request sent before the first answer: without it the instance count means nothing. */
  concurrent: boolean;
  arrivals: ArrivalFigures;
}

/** The burst on `env` (a warm pool of `pool`, full before the burst starts). */
export async function measureBurst(
  p: BenchPlatform,
  env: string,
  pool: number,
  holdMs = HOLD_MS,
): Promise<BurstFigures> {
  await warmPoolFull(p, env, pool);
  await p.api("POST", "/v1/namespaces/default/functions", {
    name: NAME,
    spec: {
      environment: env,
      code: code(
        "f.js",
        `module.exports = async () => { await new Promise(r => setTimeout(r, ${holdMs})); return "ok"; };\n`,
      ),
      concurrency: CONCURRENCY,
      maxInstances: 20,
    },
  });
  const agent = new Agent({ connections: REQUESTS, pipelining: 0 });
  const times: number[] = [];
  let errors = 0;
  const probe = new ArrivalProbe(p.gatewayUrl, `/function/${NAME}`);
  try {
    await Promise.all(
      Array.from({ length: REQUESTS }, async () => {
        const t = performance.now();
        try {
          const res = await request(`${p.gatewayUrl}/function/${NAME}`, { dispatcher: agent });
          await res.body.arrayBuffer();
          if (res.statusCode !== 200) errors++;
        } catch {
          errors++;
        }
        times.push(performance.now() - t);
      }),
    );
  } finally {
    probe.stop();
    await agent.close();
  }
  const arrivals = probe.finish(REQUESTS);
  const instances = (await p.instances()).filter((i) => i.function?.name === NAME).length;
  return {
    requests: REQUESTS,
    concurrency: CONCURRENCY,
    instances,
    instances_required: Math.ceil(REQUESTS / CONCURRENCY),
    errors,
    p99_ms: round(percentile(times, 99)),
    p50_ms: round(percentile(times, 50)),
    hold_ms: holdMs,
    concurrent: arrivals.concurrent,
    arrivals,
  };
}

export function burstRows(b: BurstFigures): [string, string, string][] {
  return [
    [
      `burst ${b.requests}: instances (required) / errors / p99 ms`,
      `${b.instances} (${b.instances_required}) / ${b.errors} / ${b.p99_ms}`,
      `instances = required, 0 errors${b.concurrent ? "" : " (NOT concurrent: count not meaningful)"}`,
    ],
    arrivalsRow("burst", b.hold_ms, b.arrivals),
  ];
}

async function standalone(): Promise<BurstFigures> {
  const logFile = path.resolve(import.meta.dirname, "results/burst-platform.log");
  mkdirSync(path.dirname(logFile), { recursive: true });
  const p = await startBenchPlatform(logFile);
  try {
    const env = "bench-burst";
    await p.api("POST", "/v1/namespaces/default/environments", {
      name: env,
      spec: { image: "fizz/env-node", poolSize: 8 },
    });
    const hold = process.env.FIZZ_BURST_HOLD_MS;
    return await measureBurst(p, env, 8, hold ? Number(hold) : HOLD_MS);
  } finally {
    await p.stop();
  }
}

runIfMain(import.meta.url, standalone, burstRows);
