// `npm run bench`: every figure side by side in one run, against the baselines, on this machine.
// Prints a table, writes bench/results/latest.json and rewrites docs/benchmarks.md.
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { measureBurst } from "./burst";
import { measureBurst100 } from "./burst100";
import { measureFaultWindows } from "./fault-windows";
import { benchBus } from "./lib/bus";
import { measureEmptyPool } from "./empty-pool";
import { idleRss } from "./memory";
import { languageColdFailures, measureLanguageCold } from "./language-cold";
import { measurePackages, type PackageFigures } from "./packages";
import { measurePythonCold } from "./python-cold";
import { measureScale } from "./scale";
import { measureSoak, soakSeconds } from "./soak";
import { measureApply } from "./spec-apply";
import { code, pidOfInstance, rssMb, startBenchPlatform, type BenchPlatform } from "./lib/platform";
import { instancesSettled, warmPoolFull } from "./lib/pool";
import { attempt, docs, render, type BenchResults } from "./lib/report";
import { percentile, round } from "./lib/stats";
import { measureWarm, NODE_HELLO, prepareWarm } from "./warm";

const ROOT = path.resolve(import.meta.dirname, "..");
const QUICK = process.env.FIZZ_BENCH_QUICK === "1";
const WARM_SECONDS = QUICK ? 3 : 10;
const CONNECTIONS = 50;
const COLD_SAMPLES = QUICK ? 10 : 50;
const EMPTY_SAMPLES = QUICK ? 5 : 20;

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
  const startedAt = Date.now();
  let measured: Omit<BenchResults, "date" | "machine" | "quick" | "fault" | "scale" | "apply">;
  const memory: Record<string, number> = {};
  const children: { kill(): void }[] = [];
  try {
    const POOL = 8;
    for (const [name, image, poolSize] of [
      ["nodejs", "fizz/env-node", POOL],
      ["python", "fizz/env-python", POOL],
    ] as const) {
      await p.api("POST", "/v1/namespaces/default/environments", {
        name,
        spec: { image, poolSize },
      });
    }
    await warmPoolFull(p, "nodejs", POOL);
    await warmPoolFull(p, "python", POOL);
    // As bench/memory.ts: once kit's settling collections have run (start-up garbage is not what
    // an idle platform holds), the median of three samples.
    Object.assign(memory, await idleRss(p, startedAt));

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

    // 3. Cold start with the pool empty: the loader process starts on the request path
    // (bench/empty-pool.ts), once the instances of the cold phases above are reaped.
    const settledMs = await instancesSettled(p);
    console.log(
      `cold start with an empty pool (${EMPTY_SAMPLES} samples, settled ${settledMs} ms)…`,
    );
    const coldEmptyPool = { node: await measureEmptyPool(p, EMPTY_SAMPLES) };

    // 4. Burst: 200 concurrent first requests to one function (bench/burst.ts).
    console.log("burst of 200 concurrent first requests…");
    const burst = await measureBurst(p, "nodejs", POOL);

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
  // 7b. The bulk path: `fizz spec apply` of as many functions with routes, on a platform of its own.
  console.log("apply: fizz spec apply of 10,000 functions with routes…");
  const apply = await attempt("apply", () =>
    measureApply({
      ...(QUICK ? { functions: 1000 } : {}),
      logFile: path.join(ROOT, "bench/results/apply-platform.log"),
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
    ...apply,
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

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
