// The results of `npm run bench` (bench/run.ts): their shape (bench/results/latest.json), the table
// printed and written to docs/benchmarks.md with its method text, and the helpers that let one
// section fail without losing the others.
import { burstRows, type BurstFigures } from "../burst";
import { burst100Rows, type Burst100Figures } from "../burst100";
import { faultRows, type FaultFigures } from "../fault-windows";
import type { BusBenchResult } from "./bus";
import { languageColdRows, type LanguageColdFigures } from "../language-cold";
import { packageRows, packagesSection, type PackageFigures } from "../packages";
import { pythonColdRows, type PythonColdFigures } from "../python-cold";
import { scaleRows, type ScaleFigures } from "./scale-figures";
import { soakRows, type SoakFigures } from "../soak";
import { applyRows, type ApplyFigures } from "../spec-apply";
import { warmRows, type WarmFigures } from "../warm";

export interface LatencyFigures {
  p50_ms: number;
  p99_ms: number;
  samples: number;
  errors?: number;
}

/** What bench/results/latest.json holds (and docs/benchmarks.md is rendered from). */
export interface BenchResults {
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
  /** `fizz spec apply` of 10,000 functions with routes, on a platform of its own (bench/spec-apply.ts). */
  apply?: ApplyFigures;
  apply_error?: string;
  fault: FaultFigures;
  memory: Record<string, number>;
  /** Packages (bench/packages.ts); absent, with packages_error, when that part failed. */
  packages?: PackageFigures;
  packages_error?: string;
}

/**
 * A section that may fail without losing the others: `{ [key]: figures }`, or `{ [key_error]: message }`
 * shown in the table.
 */
export async function attempt<K extends string, T>(
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

export function render(o: BenchResults): string {
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
    ...burstRows(o.burst),
  ];
  rows.push(...sectionRows("burst 100 functions", o.burst100, o.burst100_error, burst100Rows));
  rows.push(...packageRows(o.packages, o.packages_error));
  rows.push(...sectionRows("soak", o.soak, o.soak_error, soakRows));
  rows.push(...sectionRows("scale", o.scale, o.scale_error, scaleRows));
  rows.push(...sectionRows("apply", o.apply, o.apply_error, applyRows));
  rows.push(...faultRows(o.fault));
  for (const [k, v] of Object.entries(o.memory))
    if (!/_rss_mb$/.test(k) || /_(idle|load)_rss_mb$|instance_/.test(k))
      rows.push([`memory ${k}`, String(v), ""]);
  const wa = Math.max(...rows.map((r) => r[0].length));
  const wb = Math.max(...rows.map((r) => r[1].length));
  return rows.map(([a, b, c]) => `${a.padEnd(wa)}  ${b.padEnd(wb)}  ${c}`).join("\n");
}

export function docs(o: BenchResults, table: string): string {
  return `# Benchmarks

Produced by \`npm run bench\` (bench/run.ts) on ${o.date.slice(0, 10)}: ${o.machine.cpus} cores (${o.machine.model}),
${o.machine.memGb} GiB, Node ${o.machine.node}. Raw figures: \`bench/results/latest.json\`.

Method: the whole platform as \`npm start\` runs it (five services, real NATS and Redis), on this one
machine. Warm figures: wrk, ${o.warm.connections} connections, ${o.warm.seconds} s each, against the
gateway, the same instance directly, Go's \`httputil.ReverseProxy\` (bench/baselines/goproxy) and
Debian's nginx (one worker, \`proxy_pass\` with upstream keepalive: bench/lib/nginx.ts) in front of
that instance (bench/warm.ts). CPU per request: user + system time of the proxy process, and of the
instance behind it, over the measured run, divided by the requests served. The POST row: the same
function and load with a 512-byte body (a wrk script), through the gateway and through nginx. Bus figures: the same function invoked through a core NATS message-queue
trigger (request/reply, ${o.bus.concurrency} requests in flight, ${o.bus.seconds} s), through a
JetStream trigger (${o.bus.jetstream_messages} messages published, until every answer arrived on the
response subject) and over HTTP by the same Node client (${o.bus.concurrency} in flight). Cold figures: measured at the client through the gateway, each sample a
function never invoked before, with the warm pool refilled between samples. Burst (bench/burst.ts): ${o.burst.requests}
concurrent first requests to one new function with concurrency ${o.burst.concurrency}, each call held
${o.burst.hold_ms} ms in the handler (the latencies include it). A burst counts as concurrent
(\`burst.concurrent\`, \`burst100.concurrent\`) when every request's head was written (undici's
diagnostics channel) before the first answer's head came back: otherwise late requests rightly
reuse freed slots and the instance count is not about a burst.
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
Empty pool (bench/empty-pool.ts, key \`cold_empty_pool.node\`): each sample a new Node function on an
environment with no pool, so the runtime process starts on the request path; the phase starts once
the cold phases' instances are reaped (the poolkeeper's clean-up of ~200 of them ran under it before).
Burst of 100 (bench/burst100.ts, keys \`burst100.*\`): 1,000 concurrent first requests spread
unevenly over 100 new functions (1 to 25 requests each, concurrency 4 to 25, each call held
${o.burst100?.hold_ms ?? 20} ms in the handler, a Node pool of 8), every function's instances counted against ceil(requests / concurrency).
Soak (bench/soak.ts, keys \`soak.*\`): ${o.soak?.seconds ?? "600"} s of warm calls, subject-trigger
calls (core and JetStream), async calls and a new function every few seconds, each service's RSS
and open descriptors sampled every 10 s; slopes by least squares, per minute. The anonymous RSS
slope (RssAnon: RSS less file pages) leaves out the node binary's code pages, which a first
optimizing compile faults in once (~3.5 MB), so a step there is told from growth of the process's own.
Scale (bench/scale.ts, keys \`scale.*\`): on a platform of its own, ${o.scale?.functions ?? 10000} functions,
each with an HTTP trigger, created through the REST API by ${o.scale?.clients ?? 16} clients; then every service
stopped and started again (NATS and Redis keep their data) until the gateway routes all of them
and a sample answers through its route; wrk on one route among all of them against the same
route on a reference platform holding only it (its own NATS, Redis and services), in 5 alternating
rounds once both are quiet, the ratio the median of the rounds' ratios, with the gateway's CPU per
request (the big platform's one-route figure before the creations is given for context);
list pages; RSS growth per registered function for each service.
Apply (bench/spec-apply.ts, keys \`apply.*\`, reported without a target): on a platform of its own,
\`fizz spec apply\` (the CLI as a child process) of a spec of ${o.apply?.functions ?? 10000} functions, each with
its HTTP trigger, and their environment, with \`--parallel ${o.apply?.parallel ?? 16}\`; \`plan_seconds\` is a
\`--dry-run\` of it first (loading and checking the files, reading the registry, planning),
\`write_seconds\` the apply's wall time less that, \`rerun_seconds\` a second apply finding
everything unchanged.
Fault windows (bench/fault-windows.ts, the fault suite's harness): four clients in a loop on a warm
function, async calls and registry writes, while each component is killed with SIGKILL in turn
and \`npm start\`'s supervisor restarts it; the window runs from the first failed warm request's
start to the last one's end (0: none failed). Keys \`fault.<component>_error_window_ms\`.

\`\`\`
${table}
\`\`\`

${packagesSection()}`;
}
