// `npm run bench`: every figure side by side in one run, against the baselines, on this machine.
// Prints a table, writes bench/results/latest.json and rewrites docs/benchmarks.md.
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, request } from "undici";
import { waitFor } from "@fizz/testkit";
import { burst100Rows, measureBurst100, type Burst100Figures } from "./burst100";
import { faultRows, measureFaultWindows, type FaultFigures } from "./fault-windows";
import { benchBus, type BusBenchResult } from "./lib/bus";
import {
  languageColdFailures,
  languageColdRows,
  measureLanguageCold,
  type LanguageColdFigures,
} from "./language-cold";
import { measurePackages, packageRows, packagesSection, type PackageFigures } from "./packages";
import { measurePythonCold, pythonColdRows, type PythonColdFigures } from "./python-cold";
import { measureScale, scaleRows, type ScaleFigures } from "./scale";
import { measureSoak, soakRows, soakSeconds, type SoakFigures } from "./soak";
import { code, pidOfInstance, rssMb, startBenchPlatform, type BenchPlatform } from "./lib/platform";
import { percentile, round } from "./lib/stats";
import { measureWarm, NODE_HELLO, prepareWarm, warmRows, type WarmFigures } from "./warm";

const ROOT = path.resolve(import.meta.dirname, "..");
const QUICK = process.env.FIZZ_BENCH_QUICK === "1";
const WARM_SECONDS = QUICK ? 3 : 10;
const CONNECTIONS = 50;
const COLD_SAMPLES = QUICK ? 10 : 50;
const EMPTY_SAMPLES = QUICK ? 5 : 20;
const BURST = 200;

interface LatencyFigures {
  p50_ms: number;
  p99_ms: number;
  samples: number;
  errors?: number;
}

interface BurstFigures {
  requests: number;
  concurrency: number;
  instances: number;
  instances_required: number;
  errors: number;
  p99_ms: number;
  p50_ms: number;
}

/** What bench/results/latest.json holds (and docs/benchmarks.md is rendered from). */
interface BenchResults {
  date: string;
  machine: { cpus: number; model: string | undefined; memGb: number; node: string };
  quick: boolean;
  warm: WarmFigures;
  bus: BusBenchResult;
  /** Python's figures: bench/python-cold.ts; Go, PHP, Ruby and C#'s: bench/language-cold.ts. */
  cold: { node: LatencyFigures } & PythonColdFigures & Partial<LanguageColdFigures>;
  cold_empty_pool: { node: LatencyFigures };
  burst: BurstFigures;
  /** 1,000 first requests over 100 new functions (bench/burst100.ts). */
  burst100?: Burst100Figures;
  burst100_error?: string;
  /** Steady mixed traffic, RSS and fd slopes (bench/soak.ts). */
  soak?: SoakFigures;
  soak_error?: string;
  /** 10,000 functions with routes, on a platform of its own (bench/scale.ts). */
  scale?: ScaleFigures;
  scale_error?: string;
  fault: FaultFigures;
  memory: Record<string, number>;
  /** Packages (bench/packages.ts); absent, with packages_error, when that part failed. */
  packages?: PackageFigures;
  packages_error?: string;
}

async function fn(
  p: BenchPlatform,
  name: string,
  env: string,
  text: string,
  extra: Record<string, unknown> = {},
) {
  const filename = env.startsWith("python") ? "f.py" : "f.js";
  await p.api("POST", "/v1/namespaces/default/functions", {
    name,
    spec: { environment: env, code: code(filename, text), ...extra },
  });
}

async function warmPoolFull(p: BenchPlatform, env: string, size: number) {
  await waitFor(
    async () =>
      (await p.instances()).filter((i) => i.state === "warm" && i.environment.name === env)
        .length >= size,
    { timeoutMs: 60_000, intervalMs: 20, what: `warm pool of ${env}` },
  );
}

async function timedGet(url: string): Promise<{ ms: number; status: number }> {
  const t = performance.now();
  const res = await fetch(url);
  await res.arrayBuffer();
  return { ms: performance.now() - t, status: res.status };
}

async function main() {
  const { goproxyBin } = prepareWarm();
  const logFile = path.join(ROOT, "bench/results/platform.log");
  mkdirSync(path.dirname(logFile), { recursive: true });
  console.log("starting the platform…");
  const p = await startBenchPlatform(logFile);
  let measured: Omit<BenchResults, "date" | "machine" | "quick" | "fault" | "scale">;
  const memory: Record<string, number> = {};
  const children: { kill(): void }[] = [];
  try {
    const POOL = 8;
    for (const [name, image, poolSize] of [
      ["nodejs", "fizz/env-node", POOL],
      ["python", "fizz/env-python", POOL],
      ["node-empty", "fizz/env-node", 0],
    ] as const) {
      await p.api("POST", "/v1/namespaces/default/environments", {
        name,
        spec: { image, poolSize },
      });
    }
    await warmPoolFull(p, "nodejs", POOL);
    await warmPoolFull(p, "python", POOL);
    for (const svc of Object.keys(p.pids)) memory[`${svc}_idle_rss_mb`] = await rssMb(p.pids[svc]!);

    // 1. Warm: gateway vs nginx vs Go reverse proxy vs direct, same instance, same load generator
    // (bench/warm.ts), with the CPU each process spends per request.
    console.log("warm throughput…");
    // Memory halfway through the gateway's run.
    const sampleUnderLoad = async () => {
      await sleep((WARM_SECONDS * 1000) / 2);
      for (const svc of Object.keys(p.pids))
        memory[`${svc}_load_rss_mb`] = await rssMb(p.pids[svc]!);
    };
    const { warm, instanceId } = await measureWarm(p, {
      goproxyBin,
      seconds: WARM_SECONDS,
      connections: CONNECTIONS,
      warmupSeconds: QUICK ? 3 : 5,
      duringGateway: sampleUnderLoad,
    });
    const specializedPid = await pidOfInstance(instanceId);
    if (specializedPid) memory.instance_specialized_node_rss_mb = await rssMb(specializedPid);
    const warmNode = (await p.instances()).find(
      (i) => i.state === "warm" && i.environment.name === "nodejs",
    );
    const warmPid = warmNode && (await pidOfInstance(warmNode.id));
    if (warmPid) memory.instance_warm_node_rss_mb = await rssMb(warmPid);
    const warmPy = (await p.instances()).find(
      (i) => i.state === "warm" && i.environment.name === "python",
    );
    const warmPyPid = warmPy && (await pidOfInstance(warmPy.id));
    if (warmPyPid) memory.instance_warm_python_rss_mb = await rssMb(warmPyPid);

    // 1b. NATS-triggered invocations (core request/reply, JetStream trigger) next to HTTP, same function.
    console.log("bus: NATS-triggered invocations vs HTTP…");
    const bus = await benchBus({
      natsUrl: p.natsUrl,
      gatewayUrl: p.gatewayUrl,
      api: (method, path, body) => p.api(method, path, body),
      fn: "warm",
      seconds: QUICK ? 3 : 5,
      concurrency: CONNECTIONS,
      jetstreamMessages: QUICK ? 2000 : 10_000,
    });

    // 2. Cold start from a warm pool: each sample a function never invoked before.
    const coldFromPool = async (runtime: string, env: string, text: string) => {
      console.log(`cold start from the warm pool (${runtime}, ${COLD_SAMPLES} samples)…`);
      const samples: number[] = [];
      let errors = 0;
      for (let i = 0; i < COLD_SAMPLES; i++) {
        const name = `cold-${runtime}-${i}`;
        await fn(p, name, env, text, { idleTimeoutSeconds: 5 });
        await warmPoolFull(p, env, POOL);
        const r = await timedGet(`${p.gatewayUrl}/function/${name}`);
        if (r.status !== 200) errors++;
        samples.push(r.ms);
      }
      return {
        p50_ms: round(percentile(samples, 50)),
        p99_ms: round(percentile(samples, 99)),
        samples: samples.length,
        errors,
      };
    };
    const cold = {
      node: await coldFromPool("node", "nodejs", NODE_HELLO),
      ...(await measurePythonCold(p, POOL)),
      // Each on its own environment, created and deleted there, so what follows is unchanged.
      ...(await measureLanguageCold(p, POOL)),
    };

    // 3. Cold start with the pool empty: the loader process starts on the request path.
    console.log(`cold start with an empty pool (${EMPTY_SAMPLES} samples)…`);
    const empty: number[] = [];
    for (let i = 0; i < EMPTY_SAMPLES; i++) {
      const name = `empty-${i}`;
      await fn(p, name, "node-empty", NODE_HELLO, { idleTimeoutSeconds: 5 });
      empty.push((await timedGet(`${p.gatewayUrl}/function/${name}`)).ms);
    }
    const coldEmptyPool = {
      node: {
        p50_ms: round(percentile(empty, 50)),
        p99_ms: round(percentile(empty, 99)),
        samples: empty.length,
      },
    };

    // 4. Burst: 200 concurrent first requests to one function.
    console.log(`burst of ${BURST} concurrent first requests…`);
    await warmPoolFull(p, "nodejs", POOL);
    const burstConcurrency = 50;
    await fn(
      p,
      "burst",
      "nodejs",
      'module.exports = async () => { await new Promise(r => setTimeout(r, 20)); return "ok"; };\n',
      {
        concurrency: burstConcurrency,
        maxInstances: 20,
      },
    );
    const agent = new Agent({ connections: BURST, pipelining: 0 });
    const burstTimes: number[] = [];
    let burstErrors = 0;
    await Promise.all(
      Array.from({ length: BURST }, async () => {
        const t = performance.now();
        try {
          const res = await request(`${p.gatewayUrl}/function/burst`, { dispatcher: agent });
          await res.body.arrayBuffer();
          if (res.statusCode !== 200) burstErrors++;
        } catch {
          burstErrors++;
        }
        burstTimes.push(performance.now() - t);
      }),
    );
    await agent.close();
    const burstInstances = (await p.instances()).filter((i) => i.function?.name === "burst").length;
    const burst: BurstFigures = {
      requests: BURST,
      concurrency: burstConcurrency,
      instances: burstInstances,
      instances_required: Math.ceil(BURST / burstConcurrency),
      errors: burstErrors,
      p99_ms: round(percentile(burstTimes, 99)),
      p50_ms: round(percentile(burstTimes, 50)),
    };

    // 5. Packages: archive deployments of 1/10/50 MiB, a Node build, the poolkeeper's peak RSS.
    // A failure here is reported in the table; the figures above still get written.
    let packages: PackageFigures | undefined;
    let packagesError: string | undefined;
    try {
      packages = await measurePackages(p, POOL);
    } catch (err) {
      packagesError = err instanceof Error ? err.message : String(err);
      console.error("packages: not measured:", err);
    }
    // 5b. 1,000 concurrent first requests over 100 functions of uneven demand; after the package
    // figures, which the teardown of its ~140 instances would disturb.
    console.log("burst: 1,000 first requests over 100 functions…");
    const burst100 = await attempt("burst100", () => measureBurst100(p));

    // 6. Soak: steady warm, cold, async and subject-trigger traffic; RSS and fd slopes.
    console.log(`soak: ${soakSeconds()} s of mixed traffic…`);
    const soak = await attempt("soak", () => measureSoak(p, { seconds: soakSeconds() }));
    measured = {
      warm,
      bus,
      cold,
      cold_empty_pool: coldEmptyPool,
      burst,
      memory,
      ...(packages ? { packages } : {}),
      ...(packagesError !== undefined ? { packages_error: packagesError } : {}),
      ...burst100,
      ...soak,
    };
  } finally {
    for (const c of children) c.kill();
    await p.stop();
  }
  // 7. Scale: 10,000 functions with routes, on a platform of its own (a restart is part of it).
  console.log("scale: 10,000 functions with routes…");
  const scale = await attempt("scale", () =>
    measureScale({
      ...(QUICK ? { functions: 1000 } : {}),
      logFile: path.join(ROOT, "bench/results/scale-platform.log"),
    }),
  );
  // On its own platform: the kills must not disturb the figures above.
  console.log("fault windows (kill -9 each component under load)…");
  const fault = await measureFaultWindows();

  const flat = Object.fromEntries(
    Object.entries(measured.memory).map(([k, v]) => [k.replace(/_idle_rss_mb$/, "_rss_mb"), v]),
  );
  const out: BenchResults = {
    date: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model,
      memGb: round(os.totalmem() / 2 ** 30, 1),
      node: process.version,
    },
    quick: QUICK,
    ...measured,
    ...scale,
    fault,
    memory: { ...measured.memory, ...flat },
  };
  writeFileSync(path.join(ROOT, "bench/results/latest.json"), JSON.stringify(out, null, 2) + "\n");
  const table = render(out);
  console.log("\n" + table);
  writeFileSync(path.join(ROOT, "docs/benchmarks.md"), docs(out, table));
  // Written first, so the other figures are kept; then a language that was not measured fails the run.
  const failures = languageColdFailures(out.cold);
  for (const line of failures) console.error(line);
  if (failures.length > 0) process.exitCode = 1;
}

/**
 * A section that may fail without losing the others: `{ [key]: figures }`, or `{ [key_error]: message }`
 * shown in the table.
 */
async function attempt<K extends string, T>(
  key: K,
  run: () => Promise<T>,
): Promise<Partial<Record<K, T> & Record<`${K}_error`, string>>> {
  try {
    return { [key]: await run() } as Partial<Record<K, T> & Record<`${K}_error`, string>>;
  } catch (err) {
    console.error(`${key}: not measured:`, err);
    const message = err instanceof Error ? err.message : String(err);
    return { [`${key}_error`]: message } as Partial<Record<K, T> & Record<`${K}_error`, string>>;
  }
}

function sectionRows<T>(
  label: string,
  figures: T | undefined,
  error: string | undefined,
  rows: (f: T) => [string, string, string][],
): [string, string, string][] {
  if (figures !== undefined) return rows(figures);
  return [[label, "not measured", error ?? ""]];
}

function render(o: BenchResults): string {
  const w = o.warm;
  const rows: [string, string, string][] = [
    ...warmRows(w),
    [
      "bus rps: NATS core / JetStream / HTTP (same client)",
      `${o.bus.core_rps} / ${o.bus.jetstream_rps} / ${o.bus.http_rps}`,
      `lost ${o.bus.jetstream_lost}, errors ${o.bus.core_errors + o.bus.http_errors}`,
    ],
    [
      "cold (warm pool) node p50 / p99 ms",
      `${o.cold.node.p50_ms} / ${o.cold.node.p99_ms}`,
      "<= 8 / 20",
    ],
    ...pythonColdRows(o.cold),
    ...languageColdRows(o.cold),
    [
      "cold (empty pool) node p50 / p99 ms",
      `${o.cold_empty_pool.node.p50_ms} / ${o.cold_empty_pool.node.p99_ms}`,
      "p50 <= 120",
    ],
    [
      "burst 200: instances (required) / errors / p99 ms",
      `${o.burst.instances} (${o.burst.instances_required}) / ${o.burst.errors} / ${o.burst.p99_ms}`,
      "instances = required, 0 errors",
    ],
  ];
  rows.push(...sectionRows("burst 100 functions", o.burst100, o.burst100_error, burst100Rows));
  rows.push(...packageRows(o.packages, o.packages_error));
  rows.push(...sectionRows("soak", o.soak, o.soak_error, soakRows));
  rows.push(...sectionRows("scale", o.scale, o.scale_error, scaleRows));
  rows.push(...faultRows(o.fault));
  for (const [k, v] of Object.entries(o.memory))
    if (!/_rss_mb$/.test(k) || /_(idle|load)_rss_mb$|instance_/.test(k))
      rows.push([`memory ${k}`, String(v), ""]);
  const wa = Math.max(...rows.map((r) => r[0].length));
  const wb = Math.max(...rows.map((r) => r[1].length));
  return rows.map(([a, b, c]) => `${a.padEnd(wa)}  ${b.padEnd(wb)}  ${c}`).join("\n");
}

function docs(o: BenchResults, table: string): string {
  return `# Benchmarks

Produced by \`npm run bench\` (bench/run.ts) on ${o.date.slice(0, 10)}: ${o.machine.cpus} cores (${o.machine.model}),
${o.machine.memGb} GiB, Node ${o.machine.node}. Raw figures: \`bench/results/latest.json\`.

Method: the whole platform as \`npm start\` runs it (five services, real NATS and Redis), on this one
machine. Warm figures: wrk, ${o.warm.connections} connections, ${o.warm.seconds} s each, against the
gateway, the same instance directly, Go's \`httputil.ReverseProxy\` (bench/baselines/goproxy) and
Debian's nginx (one worker, \`proxy_pass\` with upstream keepalive: bench/lib/nginx.ts) in front of
that instance (bench/warm.ts). CPU per request: user + system time of the proxy process, and of the
instance behind it, over the measured run, divided by the requests served. Bus figures: the same function invoked through a core NATS message-queue
trigger (request/reply, ${o.bus.concurrency} requests in flight, ${o.bus.seconds} s), through a
JetStream trigger (${o.bus.jetstream_messages} messages published, until every answer arrived on the
response subject) and over HTTP by the same Node client (${o.bus.concurrency} in flight). Cold figures: measured at the client through the gateway, each sample a
function never invoked before, with the warm pool refilled between samples. Burst: ${o.burst.requests}
concurrent first requests to one new function with concurrency ${o.burst.concurrency}.
Python cold figures (bench/python-cold.ts): \`python\` is \`def main()\` returning a string (no Flask)
and \`python_context\` \`def main(context)\`, as the other cold figures; \`python_flask\` a function
using \`flask.request\` with every warm instance up for 2 s (done importing Flask in the
background), \`python_flask_fresh\` the same taken the moment the refill answers, before that
import finished.
Go, PHP, Ruby and C# cold figures (bench/language-cold.ts, keys \`cold.go\`, \`cold.php\`,
\`cold.ruby\`, \`cold.dotnet\`): each language's hello world, measured as the Node figure, on its
own environment (a pool of 8, deleted afterwards). PHP and Ruby functions are single files; Go and
C# functions are packages the builder compiles, built once (\`build_s\`, from the source upload to
\`buildState=succeeded\`), each sample a new function on that package, so a sample streams the
compiled deployment into a warm instance that loads it.
Burst of 100 (bench/burst100.ts, keys \`burst100.*\`): 1,000 concurrent first requests spread
unevenly over 100 new functions (1 to 25 requests each, concurrency 4 to 25, a 20 ms handler,
a Node pool of 8), every function's instances counted against ceil(requests / concurrency).
Soak (bench/soak.ts, keys \`soak.*\`): ${o.soak?.seconds ?? "600"} s of warm calls, subject-trigger
calls (core and JetStream), async calls and a new function every few seconds, each service's RSS
and open descriptors sampled every 10 s; slopes by least squares, per minute.
Scale (bench/scale.ts, keys \`scale.*\`): on a platform of its own, ${o.scale?.functions ?? 10000} functions,
each with an HTTP trigger, created through the REST API by ${o.scale?.clients ?? 16} clients; then every service
stopped and started again (NATS and Redis keep their data) until the gateway routes all of them
and a sample answers through its route; wrk on one route with one route and with all of them;
list pages; RSS growth per registered function for each service.
Fault windows (bench/fault-windows.ts, the fault suite's harness): four clients in a loop on a warm
function, async calls and registry writes, while each component is killed with SIGKILL in turn
and \`npm start\`'s supervisor restarts it; the window runs from the first failed warm request's
start to the last one's end (0: none failed). Keys \`fault.<component>_error_window_ms\`.

\`\`\`
${table}
\`\`\`

${packagesSection()}`;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
