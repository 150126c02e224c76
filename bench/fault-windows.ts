// Error windows under kill -9: the platform as `npm start` runs it (supervisor, embedded NATS and
// Redis), steady warm HTTP load, async calls and registry writes, and each component killed in
// turn (the same harness as the fault suite, test/fault/). For each component: how long the
// supervisor took to bring it back ready, and the warm error window (first failed request's start
// to last failed request's end; 0 = no warm request failed). Part of `npm run bench`; alone:
// `node --import tsx bench/fault-windows.ts` (`--merge` also writes the figures into
// bench/results/latest.json and docs/benchmarks.md without re-running the other benchmarks).
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import {
  COMPONENTS,
  deployWarm,
  killAndMeasure,
  Load,
  missingWrites,
  shutdown,
  sleep,
  startFaultPlatform,
  unfinishedCalls,
  type FaultPlatform,
} from "../test/fault/harness";

export type FaultFigures = Record<string, number>;

export async function measureFaultWindows(): Promise<FaultFigures> {
  let p: FaultPlatform | undefined;
  let load: Load | undefined;
  const out: FaultFigures = {};
  try {
    p = await startFaultPlatform();
    await deployWarm(p);
    load = new Load(p);
    await sleep(1500);
    for (const component of COMPONENTS) {
      const r = await killAndMeasure(p, load, component);
      out[`${component}_error_window_ms`] = r.warm.windowMs;
      out[`${component}_warm_errors`] = r.warm.failed;
      out[`${component}_warm_max_latency_ms`] = r.warm.maxLatencyMs;
      out[`${component}_restart_ms`] = r.restartMs;
      out[`${component}_async_refused`] = r.async.failed;
      out[`${component}_writes_refused`] = r.writes.failed;
    }
    await load.stop();
    out.async_accepted = load.accepted.length;
    out.async_lost = (await unfinishedCalls(p, load.accepted, 60_000)).size;
    out.writes_acknowledged = load.acknowledged.length;
    out.writes_lost = (await missingWrites(p, load.acknowledged)).length;
    return out;
  } finally {
    await shutdown(p, load);
  }
}

/** One line per component for the benchmark table. */
export function faultRows(f: FaultFigures): [string, string, string][] {
  const rows: [string, string, string][] = COMPONENTS.map((c) => [
    `kill -9 ${c}: warm error window ms (errors) / slowest warm ms / restart ms`,
    `${f[`${c}_error_window_ms`]} (${f[`${c}_warm_errors`]}) / ${f[`${c}_warm_max_latency_ms`]} / ${f[`${c}_restart_ms`]}`,
    c === "gateway" ? "only the gateway's own restart" : "0 warm errors",
  ]);
  rows.push([
    "kill -9 all: async lost / accepted, writes lost / acknowledged",
    `${f.async_lost} / ${f.async_accepted}, ${f.writes_lost} / ${f.writes_acknowledged}`,
    "0 lost",
  ]);
  return rows;
}

const ROOT = path.resolve(import.meta.dirname, "..");
const SECTION = "\n## Fault windows\n";

/** Puts `fault` into latest.json and a fault table at the end of docs/benchmarks.md. */
function merge(f: FaultFigures): void {
  const json = path.join(ROOT, "bench/results/latest.json");
  const latest = JSON.parse(readFileSync(json, "utf8")) as Record<string, unknown>;
  latest.fault = f;
  latest.fault_date = new Date().toISOString();
  writeFileSync(json, JSON.stringify(latest, null, 2) + "\n");
  const md = path.join(ROOT, "docs/benchmarks.md");
  const text = readFileSync(md, "utf8");
  const base = text.includes(SECTION) ? text.slice(0, text.indexOf(SECTION)) : text;
  const rows = faultRows(f);
  const wa = Math.max(...rows.map((r) => r[0].length));
  const wb = Math.max(...rows.map((r) => r[1].length));
  const table = rows.map(([a, b, c]) => `${a.padEnd(wa)}  ${b.padEnd(wb)}  ${c}`).join("\n");
  writeFileSync(
    md,
    `${base}${SECTION}\nMeasured ${new Date().toISOString().slice(0, 10)} by \`node --import tsx bench/fault-windows.ts --merge\`\n` +
      `(the fault suite's harness): four clients in a loop on a warm function, async calls and\n` +
      `registry writes, each component killed with SIGKILL in turn and restarted by the supervisor.\n` +
      `Load average when written: ${os.loadavg()[0]?.toFixed(1)} on ${os.cpus().length} cores (restart times grow with it).\n\n` +
      "```\n" +
      table +
      "\n```\n",
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  measureFaultWindows().then(
    (f) => {
      console.log(JSON.stringify(f, null, 2));
      if (process.argv.includes("--merge")) merge(f);
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
