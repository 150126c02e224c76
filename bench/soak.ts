// Soak (issue 15): a steady mix of warm calls, cold calls (functions created, invoked once and
// deleted a little later), async invocations (/async-function, their status read back) and
// subject triggers (a core NATS request/reply trigger and a JetStream trigger), for
// FIZZ_SOAK_SECONDS (600 by default; `--quick` or FIZZ_BENCH_QUICK=1: 90). Every service's RSS
// and open fds are sampled every 10 s; the figure is the least-squares slope of each (per minute)
// over the run after a warm-up, and the max over services. Part of bench/run.ts (keys soak.*);
// alone: `npx tsx bench/soak.ts [--quick]` (starts its own platform).
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "@nats-io/transport-node";
import { Agent } from "undici";
import { warmPoolFull } from "./lib/pool";
import { code, startBenchPlatform, type BenchPlatform } from "./lib/platform";
import { ProcSampler, type ProcTrend } from "./lib/proc-sampler";
import { SoakTraffic, type SoakRates } from "./lib/soak-traffic";
import { round } from "./lib/stats";
import { runIfMain } from "./lib/standalone";

const NS = "default";
const ENV = "bench-soak";
const HELLO = 'module.exports = async () => ({ status: 200, body: "Hello, world!\\n" });\n';

export interface SoakFigures {
  seconds: number;
  /** Seconds of traffic before the first sample counted in the slopes. */
  warmup_seconds: number;
  requests: number;
  errors: number;
  errors_by_kind: Record<string, number>;
  requests_by_kind: Record<string, number>;
  /** Max over services. */
  rss_slope_mb_per_min: number;
  fd_slope_per_min: number;
  /** Max over services of the RSS slope over the second half of the samples. */
  rss_slope_late_mb_per_min: number;
  /** Max over services of the slope of RssAnon (RSS less file pages such as the node binary's). */
  anon_slope_mb_per_min: number;
  anon_slope_late_mb_per_min: number;
  per_service: Record<string, ProcTrend>;
  rates: SoakRates;
}

export interface SoakOptions {
  seconds?: number;
  rates?: Partial<SoakRates>;
  sampleIntervalMs?: number;
  /** Gets every RSS/fd sample at the end (the standalone entry writes them to a file). */
  onSeries?: (series: ReturnType<ProcSampler["series"]>) => void;
}

export const DEFAULT_RATES: SoakRates = {
  warmPerS: 40,
  subjectPerS: 20,
  jetstreamPerS: 5,
  asyncPerS: 5,
  coldEveryS: 5,
  coldKeepS: 30,
};

export function soakSeconds(): number {
  const quick = process.env.FIZZ_BENCH_QUICK === "1" || process.argv.includes("--quick");
  return Number(process.env.FIZZ_SOAK_SECONDS ?? (quick ? 90 : 600));
}

export async function measureSoak(p: BenchPlatform, opts: SoakOptions = {}): Promise<SoakFigures> {
  const seconds = opts.seconds ?? soakSeconds();
  const rates = { ...DEFAULT_RATES, ...opts.rates };
  // Services reach their working size 60 to 90 s into the traffic: measured with a full GC every
  // 20 s, the gateway's live heap went 16.2 → 17.1 MB in the first 63 s and 17.1 → 18.3 MB over
  // the next 240 s, flattening (RSS 94 → 114 MB, then 114 → 118). Counting from 30 s put that
  // warm-up into the slope; 90 s (a sixth of a short run) leaves it out. Growth that continues
  // after it (a leak) still shows, and rss_slope_late over the second half says whether it flattens.
  const warmup = Math.min(90, Math.max(5, Math.round(seconds / 6)));
  await p.api("POST", `/v1/namespaces/${NS}/environments`, {
    name: ENV,
    spec: { image: "fizz/env-node", poolSize: 4 },
  });
  const fn = (name: string, extra: Record<string, unknown> = {}) =>
    p.api("POST", `/v1/namespaces/${NS}/functions`, {
      name,
      spec: { environment: ENV, code: code("f.js", HELLO), ...extra },
    });
  await fn("soak-warm", { concurrency: 500 });
  await p.api("POST", `/v1/namespaces/${NS}/mqtriggers`, {
    name: "soak-core",
    spec: { function: "soak-warm", subject: "soak.core" },
  });
  await p.api("POST", `/v1/namespaces/${NS}/mqtriggers`, {
    name: "soak-js",
    spec: {
      function: "soak-warm",
      subject: "soak.js",
      stream: "SOAK",
      responseSubject: "soak-done.js",
    },
  });
  await warmPoolFull(p, ENV, 4);
  const nc = await connect({ servers: p.natsUrl, name: "bench-soak" });
  const agent = new Agent({ connections: 128, pipelining: 1 });
  const traffic = new SoakTraffic({
    gatewayUrl: p.gatewayUrl,
    nc,
    agent,
    rates,
    warmFn: "soak-warm",
    createCold: (name) => fn(name, { idleTimeoutSeconds: 10 }),
    deleteCold: (name) => p.api("DELETE", `/v1/namespaces/${NS}/functions/${name}`),
  });
  try {
    await traffic.start();
    await sleep(warmup * 1000);
    const sampler = new ProcSampler(p.pids, opts.sampleIntervalMs ?? 10_000);
    sampler.start();
    await sleep(Math.max(0, seconds - warmup) * 1000);
    const perService = await sampler.stop();
    opts.onSeries?.(sampler.series());
    const counted = await traffic.stop();
    const slopes = Object.values(perService);
    return {
      seconds,
      warmup_seconds: warmup,
      requests: Object.values(counted.requests).reduce((a, b) => a + b, 0),
      errors: Object.values(counted.errors).reduce((a, b) => a + b, 0),
      errors_by_kind: counted.errors,
      requests_by_kind: counted.requests,
      rss_slope_mb_per_min: round(Math.max(...slopes.map((s) => s.rss_slope_mb_per_min)), 3),
      fd_slope_per_min: round(Math.max(...slopes.map((s) => s.fd_slope_per_min)), 3),
      rss_slope_late_mb_per_min: round(
        Math.max(...slopes.map((s) => s.rss_slope_late_mb_per_min)),
        3,
      ),
      anon_slope_mb_per_min: round(Math.max(...slopes.map((s) => s.anon_slope_mb_per_min)), 3),
      anon_slope_late_mb_per_min: round(
        Math.max(...slopes.map((s) => s.anon_slope_late_mb_per_min)),
        3,
      ),
      per_service: perService,
      rates,
    };
  } finally {
    await traffic.stop();
    await agent.close();
    await nc.close();
    for (const t of ["soak-core", "soak-js"])
      await p.api("DELETE", `/v1/namespaces/${NS}/mqtriggers/${t}`).catch(() => undefined);
    await p.api("DELETE", `/v1/namespaces/${NS}/functions/soak-warm`).catch(() => undefined);
    await p.api("DELETE", `/v1/namespaces/${NS}/environments/${ENV}`).catch(() => undefined);
  }
}

export function soakRows(f: SoakFigures): [string, string, string][] {
  const worst = (key: "rss_slope_mb_per_min" | "anon_slope_mb_per_min" | "fd_slope_per_min") => {
    let name = "";
    let max = -Infinity;
    for (const [svc, t] of Object.entries(f.per_service))
      if (t[key] > max) [name, max] = [svc, t[key]];
    return name;
  };
  return [
    [
      `soak ${f.seconds} s: requests / errors`,
      `${f.requests} / ${f.errors}`,
      "0 errors (warm, cold, async, subject triggers)",
    ],
    [
      "soak RSS slope MB/min (max, service; second half)",
      `${f.rss_slope_mb_per_min} (${worst("rss_slope_mb_per_min")}; ${f.rss_slope_late_mb_per_min})`,
      "flat (~0)",
    ],
    [
      "soak anonymous RSS slope MB/min (max, service; second half)",
      `${f.anon_slope_mb_per_min} (${worst("anon_slope_mb_per_min")}; ${f.anon_slope_late_mb_per_min})`,
      "flat (~0): RSS without the binary's file pages",
    ],
    [
      "soak fd slope per min (max, service)",
      `${f.fd_slope_per_min} (${worst("fd_slope_per_min")})`,
      "flat (~0)",
    ],
  ];
}

async function standalone(): Promise<SoakFigures> {
  const root = path.resolve(import.meta.dirname, "..");
  const logFile = path.join(root, "bench/results/soak-platform.log");
  mkdirSync(path.dirname(logFile), { recursive: true });
  const p = await startBenchPlatform(logFile);
  try {
    return await measureSoak(p, {
      onSeries: (series) =>
        writeFileSync(
          path.join(root, "bench/results/soak-series.json"),
          JSON.stringify(series) + "\n",
        ),
    });
  } finally {
    await p.stop();
  }
}

runIfMain(import.meta.url, standalone, soakRows);
