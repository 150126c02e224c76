// Where a warm-pool cold start spends its time, hop by hop: `npx tsx bench/cold-profile.ts
// [--samples N] [--runtime node|python|go|both] [--no-trace]` (`both`: node and python; `go`
// builds the hello world once as a package, and each sample is a new function on it, as
// bench/language-cold.ts measures cold.go). Each sample creates a new function
// through the REST API, waits until the warm pool is full, then times one GET through the gateway
// at the client (as bench/run.ts "coldFromPool" and bench/python-cold.ts do). With tracing on
// (the default) the services export their spans (OTLP/HTTP JSON) to a receiver in this process,
// and the table gives each span's median and p99 per sample: the gateway's lease request, the
// scheduler's lease, the poolkeeper's specialize and its parts, the call to the instance. Tracing
// costs a little itself; `--no-trace` measures the client figures alone.
import { loadavg } from "node:os";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { waitFor } from "@fizz/testkit";
import { code, startBenchPlatform, type BenchPlatform } from "./lib/platform";
import { hopFigures, type TraceSpans } from "./cold-profile-hops";
import { buildPackage } from "./language-cold";
import { cpuMs } from "./lib/proc-cpu";
import { percentile, round } from "./lib/stats";

const ROOT = path.resolve(import.meta.dirname, "..");
const POOL = 4;
/** Samples shown span by span (ColdProfileFigures.slowest). */
const SLOWEST = 3;
const NODE_HELLO = 'module.exports = async () => ({ status: 200, body: "Hello, world!\\n" });\n';
const PY_HELLO = 'def main():\n    return "Hello, world!\\n"\n';
const GO_PACKAGE = "prof-go-hello";
type Runtime = "node" | "python" | "go";
/** Each runtime's environment and image, and what a sample's function runs. */
const RUNTIMES: Record<Runtime, { env: string; image: string; spec: () => object }> = {
  node: { env: "nodejs", image: "fizz/env-node", spec: () => ({ code: code("f.js", NODE_HELLO) }) },
  python: {
    env: "python",
    image: "fizz/env-python",
    spec: () => ({ code: code("f.py", PY_HELLO) }),
  },
  go: {
    env: "go",
    image: "fizz/env-go",
    spec: () => ({ package: { name: GO_PACKAGE }, entrypoint: "Handler" }),
  },
};

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: {
    key: string;
    value: { intValue?: string | number; doubleValue?: number; stringValue?: string };
  }[];
}
interface Collected {
  service: string;
  name: string;
  traceId: string;
  startMs: number;
  endMs: number;
  /** poolkeeper.specialize's fizz.load_ms: the runtime's own report of loading the function. */
  loadMs?: number;
  /** poolkeeper.specialize's fizz.start: warm (from the pool) or cold (an instance started for it). */
  start?: string;
}

export interface ColdProfileFigures {
  runtime: string;
  /**
   * CPU time (user + system) each platform process used per sample, in ms: robust to a busy
   * machine where wall times are not. It includes the sample's function creation, the pool
   * polling and the refill, the same before and after a change.
   */
  cpu_ms: Record<string, number>;
  client: { p50_ms: number; p99_ms: number; samples: number; errors: number };
  /**
   * The 1-minute load average before and after the samples: on a shared 2-core machine the wall
   * times are only comparable between runs with similar load (other processes' CPU, not ours).
   */
  load: { before: number; after: number };
  /** Per span name: its duration's median and p99 across the samples' traces. */
  spans: Record<
    string,
    { p50_ms: number; p99_ms: number; n: number; at_ms: number; end_ms: number }
  >;
  /**
   * Per hop (GAPS), median and p99 across the traces: the NATS hops and the waits between steps,
   * which no span covers.
   */
  gaps: Record<string, { p50_ms: number; p99_ms: number; n: number }>;
  /**
   * The slowest samples, each with its spans in start order (start and duration in ms from the
   * gateway's request span): where an outlier's time went, which a p99 per span cannot say
   * (the p99 of each span may come from a different sample).
   */
  slowest: { client_ms: number; spans: string[] }[];
  /** How many samples' specializations took a warm instance and how many started one. */
  starts: Record<string, number>;
}

/** An OTLP/HTTP JSON trace receiver on 127.0.0.1 keeping every span it is sent. */
async function receiver() {
  const spans: Collected[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
          resourceSpans?: {
            resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
            scopeSpans?: { spans?: OtlpSpan[] }[];
          }[];
        };
        for (const rs of body.resourceSpans ?? []) {
          const service =
            rs.resource?.attributes?.find((a) => a.key === "service.name")?.value.stringValue ??
            "?";
          for (const ss of rs.scopeSpans ?? [])
            for (const s of ss.spans ?? []) {
              const load = s.attributes?.find((a) => a.key === "fizz.load_ms")?.value;
              const loadMs = Number(load?.intValue ?? load?.doubleValue ?? NaN);
              const start = s.attributes?.find((a) => a.key === "fizz.start")?.value.stringValue;
              spans.push({
                service,
                name: s.name,
                traceId: s.traceId,
                startMs: Number(BigInt(s.startTimeUnixNano) / 1000n) / 1000,
                endMs: Number(BigInt(s.endTimeUnixNano) / 1000n) / 1000,
                ...(Number.isFinite(loadMs) ? { loadMs } : {}),
                ...(start !== undefined ? { start } : {}),
              });
            }
        }
      } catch {
        // not JSON: ignored
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, server };
}

async function poolFull(p: BenchPlatform, env: string, size: number) {
  await waitFor(
    async () =>
      (await p.instances()).filter((i) => i.state === "warm" && i.environment.name === env)
        .length >= size,
    { timeoutMs: 60_000, intervalMs: 20, what: `warm pool of ${env}` },
  );
}

/** utime + stime of each process, in ms (/proc/<pid>/stat, clock ticks of 10 ms). */
async function cpuOf(pids: Record<string, number>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    try {
      out[name] = await cpuMs(pid);
    } catch {
      // gone
    }
  }
  return out;
}

let created = 0;
let settleMs = 0;
const hex = (n: number) =>
  Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join("");

export async function measureColdProfile(
  p: BenchPlatform,
  runtime: Runtime,
  samples: number,
  spans: Collected[] | undefined,
): Promise<ColdProfileFigures> {
  const env = RUNTIMES[runtime].env;
  const times: number[] = [];
  const traces: string[] = [];
  const cpuBefore = await cpuOf(p.pids);
  const loadBefore = loadavg()[0] ?? 0;
  let errors = 0;
  for (let i = 0; i < samples; i++) {
    const name = `prof-${runtime}-${created++}`;
    await p.api("POST", "/v1/namespaces/default/functions", {
      name,
      spec: { environment: env, ...RUNTIMES[runtime].spec(), idleTimeoutSeconds: 5 },
    });
    await poolFull(p, env, POOL);
    // --settle-ms: also wait for the refill's own start-up work to finish, to tell its CPU apart.
    if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
    const traceId = hex(32);
    traces.push(traceId);
    const t = performance.now();
    const res = await fetch(`${p.gatewayUrl}/function/${name}`, {
      headers: spans ? { traceparent: `00-${traceId}-${hex(16)}-01` } : {},
    });
    const body = await res.text();
    times.push(performance.now() - t);
    if (res.status !== 200 || !body.startsWith("Hello")) errors++;
  }
  const cpuAfter = await cpuOf(p.pids);
  const loadAfter = loadavg()[0] ?? 0;
  const cpu_ms = Object.fromEntries(
    Object.keys(p.pids).map((k) => [
      k,
      round(((cpuAfter[k] ?? 0) - (cpuBefore[k] ?? 0)) / samples),
    ]),
  );
  // Per span name: durations, and start and end relative to the gateway's request span.
  const byName = new Map<string, { d: number[]; at: number[]; end: number[] }>();
  const perTrace = new Map<string, TraceSpans>();
  const starts: Record<string, number> = {};
  if (spans) {
    await new Promise((r) => setTimeout(r, 3000)); // the exporters' batch delay
    const wanted = new Set(traces);
    const origin = new Map<string, number>();
    for (const s of spans)
      if (wanted.has(s.traceId) && s.name === "gateway.request") origin.set(s.traceId, s.startMs);
    for (const s of spans) {
      const o = origin.get(s.traceId);
      if (o === undefined) continue;
      const key = `${s.service.replace(/^fizz-/, "")}: ${s.name}`;
      let mine = perTrace.get(s.traceId);
      if (!mine)
        perTrace.set(s.traceId, (mine = new Map<string, { start: number; end: number }>()));
      if (!mine.has(key)) mine.set(key, { start: s.startMs, end: s.endMs });
      let list = byName.get(key);
      if (!list) byName.set(key, (list = { d: [], at: [], end: [] }));
      list.d.push(s.endMs - s.startMs);
      list.at.push(s.startMs - o);
      list.end.push(s.endMs - o);
      if (s.start !== undefined) starts[s.start] = (starts[s.start] ?? 0) + 1;
      if (s.loadMs !== undefined) {
        // A row of its own: the part of poolkeeper.post that is the runtime loading the function.
        const lk = `${s.service.replace(/^fizz-/, "")}: runtime's loadMs (reported)`;
        let l = byName.get(lk);
        if (!l) byName.set(lk, (l = { d: [], at: [], end: [] }));
        l.d.push(s.loadMs);
        l.at.push(s.startMs - o);
        l.end.push(s.endMs - o);
      }
    }
  }
  const fig = (xs: number[]) => ({
    p50_ms: round(percentile(xs, 50)),
    p99_ms: round(percentile(xs, 99)),
  });
  const gaps = hopFigures(perTrace, fig);
  const slowest = times
    .map((ms, i) => ({ ms, trace: perTrace.get(traces[i] ?? "") }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, SLOWEST)
    .map(({ ms, trace }) => {
      const origin = trace?.get("gateway: gateway.request")?.start ?? 0;
      const list = [...(trace ?? new Map<string, { start: number; end: number }>())]
        .sort((a, b) => a[1].start - b[1].start)
        .map(([k, v]) => `${k} +${round(v.start - origin)} (${round(v.end - v.start)})`);
      return { client_ms: round(ms), spans: list };
    });
  return {
    runtime,
    client: { ...fig(times), samples: times.length, errors },
    load: { before: round(loadBefore), after: round(loadAfter) },
    cpu_ms,
    spans: Object.fromEntries(
      [...byName].map(([k, xs]) => [
        k,
        {
          ...fig(xs.d),
          n: xs.d.length,
          at_ms: round(percentile(xs.at, 50)),
          end_ms: round(percentile(xs.end, 50)),
        },
      ]),
    ),
    gaps,
    slowest,
    starts,
  };
}

export function coldProfileRows(f: ColdProfileFigures): [string, string, string][] {
  return [
    [
      `cold ${f.runtime} (client) p50 / p99 ms`,
      `${f.client.p50_ms} / ${f.client.p99_ms}${f.client.errors ? ` (${f.client.errors} errors)` : ""}`,
      "<= 8 / 20",
    ],
    [`  load average before / after`, `${f.load.before} / ${f.load.after}`, ""],
    [
      `  instance taken from the pool / started`,
      `${f.starts.warm ?? 0} / ${f.starts.cold ?? 0}`,
      "",
    ],
    [
      `  CPU ms per sample`,
      Object.entries(f.cpu_ms)
        .map(([k, v]) => `${k} ${v}`)
        .join(", "),
      "",
    ],
    ...Object.entries(f.spans)
      .sort((a, b) => a[1].at_ms - b[1].at_ms)
      .map(([k, v]): [string, string, string] => [
        `  ${k}`,
        `${v.p50_ms} / ${v.p99_ms}  [${v.at_ms} .. ${v.end_ms}] (n=${v.n})`,
        "",
      ]),
    ...Object.entries(f.gaps).map(([k, v]): [string, string, string] => [
      `  hop ${k}`,
      `${v.p50_ms} / ${v.p99_ms} (n=${v.n})`,
      "",
    ]),
    // Without traces there is nothing to show span by span (the client figures say the rest).
    ...f.slowest
      .filter((s) => s.spans.length > 0)
      .map((s, i): [string, string, string] => [
        `  slowest #${i + 1}: ${s.client_ms} ms`,
        s.spans.join("; "),
        "",
      ]),
  ];
}

async function standalone() {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  const samples = Number(arg("--samples") ?? 30);
  settleMs = Number(arg("--settle-ms") ?? 0);
  const which = arg("--runtime") ?? "both";
  const trace = !process.argv.includes("--no-trace");
  const rx = trace ? await receiver() : undefined;
  // launchPlatform passes this process's environment to every service.
  if (rx) {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = rx.url;
  }
  const p = await startBenchPlatform(path.join(ROOT, "bench/results/platform-cold-profile.log"));
  const out: ColdProfileFigures[] = [];
  try {
    if (which !== "both" && !(which in RUNTIMES))
      throw new Error(`--runtime: node, python, go or both (got ${which})`);
    const runtimes: Runtime[] = which === "both" ? ["node", "python"] : [which as Runtime];
    for (const rt of runtimes) {
      const { env, image } = RUNTIMES[rt];
      await p.api("POST", "/v1/namespaces/default/environments", {
        name: env,
        spec: { image, poolSize: POOL },
      });
      await poolFull(p, env, POOL);
      if (rt === "go") await buildPackage(p, "go", env, GO_PACKAGE);
      // One function first: connections, JIT and caches as a running platform has them.
      await measureColdProfile(p, rt, 2, undefined);
      out.push(await measureColdProfile(p, rt, samples, rx?.spans));
    }
  } finally {
    await p.stop();
    rx?.server.close();
  }
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  standalone().then(
    (figs) => {
      for (const f of figs)
        console.log(
          coldProfileRows(f)
            .map((r) => `${r[0].padEnd(60)} ${r[1]}`)
            .join("\n"),
        );
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
