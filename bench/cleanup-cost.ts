// What ending an instance costs: `npx tsx bench/cleanup-cost.ts [instances]` starts the platform,
// runs one call on each of N new functions (idle timeout 8 s), waits until all their instances
// are reaped, and prints the CPU per clean-up: the whole machine's (/proc/stat) over the reap
// window less an equally long idle window after it, and each service's own and its reaped
// children's (the kill pass, setpriv). Not part of `npm run bench`: a tool for A/B runs of the
// clean-up (docs/architecture.md, "Clean-ups off the cold path"). Other load on the machine
// counts in the machine figure: compare alternating runs.
import { readFileSync } from "node:fs";
import path from "node:path";
import { warmPoolFull } from "./lib/pool";
import { waitQuiet } from "./lib/proc-cpu";
import { code, startBenchPlatform, type BenchPlatform } from "./lib/platform";
import { runIfMain } from "./lib/standalone";

const ROOT = path.resolve(import.meta.dirname, "..");

/** Busy CPU of the whole machine so far, ms (/proc/stat: user, nice, system, irq, softirq). */
function machineMs(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1);
  const n = f.map(Number);
  return (n[0]! + n[1]! + n[2]! + n[5]! + n[6]!) * 10;
}

/** Each service's CPU so far, ms, and (`<name>_children`) that of its children it has reaped. */
function servicesMs(pids: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out[name] = (Number(f[11]) + Number(f[12])) * 10;
    out[`${name}_children`] = (Number(f[13]) + Number(f[14])) * 10;
  }
  return out;
}

export async function measureCleanupCost(p: BenchPlatform, n: number) {
  await p.api("POST", "/v1/namespaces/default/environments", {
    name: "cleanup-node",
    spec: { image: "fizz/env-node", poolSize: 4 },
  });
  await warmPoolFull(p, "cleanup-node", 4);
  for (let i = 0; i < n; i++) {
    await p.api("POST", "/v1/namespaces/default/functions", {
      name: `cleanup-${i}`,
      spec: {
        environment: "cleanup-node",
        code: code("f.js", 'module.exports = async () => "ok";\n'),
        idleTimeoutSeconds: 8,
      },
    });
    await (await fetch(`${p.gatewayUrl}/function/cleanup-${i}`)).arrayBuffer();
  }
  await warmPoolFull(p, "cleanup-node", 4);
  const m0 = machineMs();
  const s0 = servicesMs(p.pids);
  const t0 = performance.now();
  while ((await p.instances()).some((i) => i.state !== "warm")) {
    if (performance.now() - t0 > 120_000) throw new Error("instances not reaped within 120 s");
    await new Promise((r) => setTimeout(r, 200));
  }
  const reapMs = performance.now() - t0;
  const m1 = machineMs();
  const s1 = servicesMs(p.pids);
  await new Promise((r) => setTimeout(r, reapMs)); // the idle window, as long
  const m2 = machineMs();
  const s2 = servicesMs(p.pids);
  const per = (a: number, b: number, c: number) => Math.round(((b - a - (c - b)) / n) * 10) / 10;
  return {
    instances: n,
    reap_window_s: Math.round(reapMs) / 1000,
    machine_cpu_ms_per_cleanup: per(m0, m1, m2),
    services_cpu_ms_per_cleanup: Object.fromEntries(
      Object.keys(s0).map((k) => [k, per(s0[k]!, s1[k]!, s2[k]!)]),
    ),
  };
}

async function main() {
  const n = Number(process.argv[2] ?? 20);
  const p = await startBenchPlatform(path.join(ROOT, "bench/results/cleanup-platform.log"));
  try {
    await waitQuiet(Object.values(p.pids));
    return await measureCleanupCost(p, n);
  } finally {
    await p.stop();
  }
}

runIfMain(import.meta.url, main, (f) => [
  ["instance clean-up: machine CPU ms each", String(f.machine_cpu_ms_per_cleanup), ""],
  [
    "instance clean-up: poolkeeper + its children's CPU ms each",
    String(
      (f.services_cpu_ms_per_cleanup.poolkeeper ?? 0) +
        (f.services_cpu_ms_per_cleanup.poolkeeper_children ?? 0),
    ),
    "",
  ],
]);
