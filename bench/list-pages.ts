// List pages at scale, alone (issue 15): a registry (its bundle, with the flags the launcher gives
// it, plus --trace-gc) over a real Redis holding FIZZ_LIST_FUNCTIONS functions and as many HTTP
// triggers, every page of 500 timed over REST and over `registry.list`, with the registry's GC
// pauses counted per page. The objects are one function and one trigger created through the API,
// copied with a Redis pipeline under other names (as the registry writes them: object, both sets,
// the list index), so a run takes seconds instead of the minutes 20,000 creates would; then the
// registry is restarted over them, so the first round is the first listing of a registry starting
// over 10,000 stored functions.
// `npx tsx bench/list-pages.ts`; FIZZ_LIST_ROUNDS (default 5) passes over every kind.
import { spawn } from "node:child_process";
import { appendFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { Agent, request } from "undici";
import { MEMORY_SETTLED_AFTER_MS } from "@fizz/kit";
import { Codecs, redisKeys, subjects as subjectsOf, type KindPlural } from "@fizz/events";
import { freePort, startNats, startRedis } from "@fizz/testkit";
import { buildServices, SERVICE_NODE_FLAGS, serviceBundle } from "../scripts/lib/service-build.mjs";
import { code } from "./lib/platform";
import { percentile, round } from "./lib/stats";
import { runIfMain } from "./lib/standalone";

const NS = "default";
const TOKEN = "bench-admin-token-0123456789abcdef";
const KINDS: KindPlural[] = ["functions", "httptriggers"];

interface Series {
  p50: number;
  p99: number;
  max: number;
  pages: number;
  /** The slowest page's index in its round and kind, and the GC pause (ms) seen while it ran. */
  slowest: string;
}

export interface ListPageFigures {
  functions: number;
  rounds: number;
  rest: Series;
  /** The first round alone (the first pages after start: JIT, caches). */
  rest_first_round: Series;
  nats: Series;
  list_all_ms: number;
  gc_scavenges: number;
  gc_mark_sweeps: number;
  gc_pause_ms: number;
  /** The registry's CPU (user + system) per page, first round (REST and bus) and the rest. */
  cpu_ms_per_page_first_round: number;
  cpu_ms_per_page_later: number;
  /** The registry's RSS after start and settling over the stored objects, before any page. */
  registry_rss_mb_idle: number;
  /** ... after the first round of pages (every object listed once over REST and the bus). */
  registry_rss_mb_first_round: number;
  registry_rss_mb_after: number;
}

/**
 * The registry's main (JS) thread so far, in ms: time on a CPU and time runnable but waiting for
 * one (/proc/<pid>/task/<pid>/schedstat, nanoseconds). Per page, this tells a page slowed by its own
 * work (GC pauses included) from one the machine's other load kept off the CPU.
 */
async function mainThread(pid: number): Promise<{ run: number; wait: number }> {
  const [run = 0, wait = 0] = (await readFile(`/proc/${pid}/task/${pid}/schedstat`, "utf8"))
    .split(" ")
    .map(Number);
  return { run: run / 1e6, wait: wait / 1e6 };
}

/** CPU time (user + system) of a process so far, in ms (clock ticks are 10 ms on Linux). */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function series(samples: { ms: number; label: string }[]): Series {
  const ms = samples.map((s) => s.ms);
  const worst = samples.reduce((a, b) => (b.ms > a.ms ? b : a), samples[0]!);
  return {
    p50: round(percentile(ms, 50)),
    p99: round(percentile(ms, 99)),
    max: round(Math.max(...ms)),
    pages: ms.length,
    slowest: worst.label,
  };
}

export async function measureListPages(
  n: number,
  rounds: number,
  gcLog?: string,
): Promise<ListPageFigures> {
  const [nats, redisServer] = await Promise.all([startNats(), startRedis()]);
  const dist = await mkdtemp(path.join(tmpdir(), "fizz-list-dist-"));
  const work = await mkdtemp(path.join(tmpdir(), "fizz-list-work-"));
  const port = await freePort();
  const redis = new Redis(redisServer.url);
  let child: ReturnType<typeof spawn> | undefined;
  const dispatcher = new Agent({ connections: 4 });
  // --trace-gc lines: pauses summed per page (the page's window in the registry's own clock is
  // not known here, so a line counts for the page in flight when it arrived).
  let gcPause = 0;
  let scavenges = 0;
  let markSweeps = 0;
  try {
    await buildServices({ dist });
    const env = {
      ...process.env,
      FIZZ_NATS_URL: nats.url,
      FIZZ_REDIS_URL: redisServer.url,
      FIZZ_REGISTRY_PORT: String(port),
      FIZZ_ADMIN_TOKEN: TOKEN,
      FIZZ_READ_TOKEN: `${TOKEN}-read`,
      FIZZ_LOG_LEVEL: "warn",
      FIZZ_REGISTRY_WORKDIR: work,
    };
    // FIZZ_LIST_NODE_FLAGS: more flags for the registry (e.g. --cpu-prof --cpu-prof-dir=...).
    const extra = (process.env.FIZZ_LIST_NODE_FLAGS ?? "").split(" ").filter(Boolean);
    const flags = [...(SERVICE_NODE_FLAGS.registry ?? []), "--trace-gc", ...extra];
    // The registry is started twice: once to create the templates through the API, and again
    // over the filled Redis, so the pages timed are those of a registry that starts over 10,000
    // stored functions (a restart), as in production, not of objects written behind its back.
    let started = Date.now();
    const start = () => {
      started = Date.now();
      const proc = spawn(process.execPath, [...flags, serviceBundle("registry", dist)], {
        env,
        stdio: ["ignore", "pipe", "inherit"],
      });
      let buf = "";
      proc.stdout.on("data", (d: Buffer) => {
        buf += d.toString();
        if (gcLog) appendFileSync(gcLog, d);
        let i: number;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const m = /(Scavenge|Mark-Compact|Mark-sweep)[^,]*,\s*([\d.]+)\s*\/\s*([\d.]+)\s*ms/.exec(
            line,
          );
          if (!m) continue;
          if (m[1] === "Scavenge") scavenges++;
          else markSweeps++;
          gcPause += Number(m[2]);
        }
      });
      return proc;
    };
    child = start();
    const base = `http://127.0.0.1:${port}`;
    const api = async (method: string, p: string, body?: unknown) => {
      const res = await request(`${base}${p}`, {
        method: method as "GET",
        dispatcher,
        headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.body.text();
      if (res.statusCode >= 300) throw new Error(`${method} ${p}: ${res.statusCode} ${text}`);
      return JSON.parse(text) as { items?: unknown[]; continue?: string };
    };
    const ready = async () => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const ok = await request(`${base}/readyz`, { dispatcher })
          .then(async (r) => (await r.body.dump(), r.statusCode === 200))
          .catch(() => false);
        if (ok) return;
        if (Date.now() > deadline) throw new Error("registry not ready");
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await ready();

    await api("POST", `/v1/namespaces/${NS}/environments`, {
      name: "env",
      spec: { image: "fizz/env-node", poolSize: 1 },
    });
    await api("POST", `/v1/namespaces/${NS}/functions`, {
      name: "template",
      spec: { environment: "env", code: code("f.js", "module.exports = async () => 1;\n") },
    });
    await api("POST", `/v1/namespaces/${NS}/httptriggers`, {
      name: "template",
      spec: { function: "template", path: "/template" },
    });
    const keys = redisKeys();
    for (const kind of KINDS) {
      const raw = await redis.get(keys.obj(kind, NS, "template"));
      if (!raw) throw new Error(`template ${kind} not stored`);
      for (let start = 0; start < n; start += 1000) {
        const pipe = redis.pipeline();
        for (let i = start; i < Math.min(n, start + 1000); i++) {
          const name = `s-${i}`;
          const obj = JSON.parse(raw) as {
            metadata: { name: string; uid: string };
            spec: Record<string, unknown>;
          };
          obj.metadata.name = name;
          obj.metadata.uid = `${obj.metadata.uid.slice(0, -6)}${String(i).padStart(6, "0")}`;
          if (kind === "httptriggers") Object.assign(obj.spec, { function: name, path: `/s/${i}` });
          pipe.set(keys.obj(kind, NS, name), JSON.stringify(obj));
          pipe.sadd(keys.kindIndex(kind), `${NS}/${name}`);
          pipe.sadd(keys.nsIndex(kind, NS), name);
          pipe.zadd(keys.listIndex(kind), 0, `${NS}\0${name}`);
        }
        await pipe.exec();
      }
    }

    const first = child;
    const exited = new Promise((r) => first.once("exit", r));
    first.kill("SIGTERM");
    await exited;
    scavenges = markSweeps = gcPause = 0;
    child = start();
    await ready();
    // Past the registry's settling collections (kit's settleMemoryAfterStart: full GCs in its first
    // 45 s), which would otherwise land on pages and be taken for the listing's own.
    const settled = started + MEMORY_SETTLED_AFTER_MS;
    if (Date.now() < settled) await new Promise((r) => setTimeout(r, settled - Date.now()));
    const rssMb = async () => {
      const status = await readFile(`/proc/${child!.pid}/status`, "utf8");
      return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
    };
    const idleRss = await rssMb();
    const nc = await connect({ servers: nats.url });
    const cpu: number[] = [];
    const subjects = subjectsOf();
    const rest: { ms: number; label: string }[] = [];
    const firstRound: { ms: number; label: string }[] = [];
    const overNats: { ms: number; label: string }[] = [];
    let firstRoundRss = NaN;
    for (let r = 0; r < rounds; r++) {
      if (r === 1) firstRoundRss = await rssMb();
      cpu.push(await cpuMs(child.pid!));
      for (const kind of KINDS) {
        let token: string | undefined;
        let page = 0;
        do {
          const q = `?limit=500${token ? `&continue=${encodeURIComponent(token)}` : ""}`;
          const gc0 = gcPause;
          const th0 = gcLog ? await mainThread(child.pid!) : undefined;
          const t = performance.now();
          const body = await api("GET", `/v1/namespaces/${NS}/${kind}${q}`);
          const ms = performance.now() - t;
          const sample = { ms, label: `r${r} ${kind} p${page} gc ${round(gcPause - gc0)}` };
          // Each page's time among the registry's GC lines, in arrival order, to pin outliers,
          // with the registry's main thread's CPU and run-queue wait meanwhile.
          if (gcLog && th0) {
            const th = await mainThread(child.pid!);
            const cpu = `run ${round(th.run - th0.run)} wait ${round(th.wait - th0.wait)}`;
            appendFileSync(gcLog, `PAGE rest ${sample.label} ${round(ms)} ms ${cpu}\n`);
          }
          rest.push(sample);
          if (r === 0) firstRound.push(sample);
          token = body.continue;
          page++;
        } while (token);
        token = undefined;
        page = 0;
        do {
          const gc0 = gcPause;
          const th0 = gcLog ? await mainThread(child.pid!) : undefined;
          const t = performance.now();
          const msg = await nc.request(
            subjects.registryList,
            Codecs.registryList.request.encode(
              { kind, limit: 500, ...(token ? { continue: token } : {}) },
              "bench",
            ),
            { timeout: 10_000 },
          );
          const reply = Codecs.registryList.reply.decode(msg.data).data;
          const ms = performance.now() - t;
          const label = `r${r} ${kind} p${page} gc ${round(gcPause - gc0)}`;
          if (gcLog && th0) {
            const th = await mainThread(child.pid!);
            const cpu = `run ${round(th.run - th0.run)} wait ${round(th.wait - th0.wait)}`;
            appendFileSync(gcLog, `PAGE nats ${label} ${round(ms)} ms ${cpu}\n`);
          }
          overNats.push({ ms, label });
          token = reply.continue;
          page++;
        } while (token);
      }
    }
    cpu.push(await cpuMs(child.pid!));
    await nc.close();
    const pagesPerRound = (rest.length + overNats.length) / rounds;
    const tAll = performance.now();
    await api("GET", `/v1/namespaces/${NS}/functions`);
    const listAllMs = performance.now() - tAll;
    const rss = await rssMb();
    return {
      functions: n,
      rounds,
      rest: series(rest),
      rest_first_round: series(firstRound),
      nats: series(overNats),
      list_all_ms: round(listAllMs),
      gc_scavenges: scavenges,
      gc_mark_sweeps: markSweeps,
      gc_pause_ms: round(gcPause),
      cpu_ms_per_page_first_round: round((cpu[1]! - cpu[0]!) / pagesPerRound),
      cpu_ms_per_page_later: round((cpu[rounds]! - cpu[1]!) / (pagesPerRound * (rounds - 1))),
      registry_rss_mb_idle: round(idleRss, 1),
      registry_rss_mb_first_round: round(firstRoundRss, 1),
      registry_rss_mb_after: round(rss, 1),
    };
  } finally {
    child?.kill("SIGTERM");
    redis.disconnect();
    await dispatcher.close();
    await Promise.all([nats.cleanup(), redisServer.cleanup()]);
    await rm(dist, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
}

runIfMain(
  import.meta.url,
  () =>
    measureListPages(
      Number(process.env.FIZZ_LIST_FUNCTIONS ?? "10000"),
      Number(process.env.FIZZ_LIST_ROUNDS ?? "5"),
      process.env.FIZZ_LIST_GC_LOG,
    ),
  (f) => [
    [
      `list pages of 500, ${f.functions} per kind, REST: p50 / p99 / max ms`,
      `${f.rest.p50} / ${f.rest.p99} / ${f.rest.max} (${f.rest.slowest})`,
      "p99 < 50",
    ],
    [
      "first round alone (REST)",
      `${f.rest_first_round.p50} / ${f.rest_first_round.p99} / ${f.rest_first_round.max} (${f.rest_first_round.slowest})`,
      "reported",
    ],
    [
      "registry.list pages: p50 / p99 / max ms",
      `${f.nats.p50} / ${f.nats.p99} / ${f.nats.max} (${f.nats.slowest})`,
      "p99 < 50",
    ],
    ["unpaginated list of functions (ms)", `${f.list_all_ms}`, "reported"],
    [
      "registry CPU per page, first round / later (ms)",
      `${f.cpu_ms_per_page_first_round} / ${f.cpu_ms_per_page_later}`,
      "reported",
    ],
    [
      "registry RSS idle over the objects / after the first round / after all (MB)",
      `${f.registry_rss_mb_idle} / ${f.registry_rss_mb_first_round} / ${f.registry_rss_mb_after}`,
      "reported",
    ],
    [
      "registry GC: scavenges / mark-sweeps / pause ms",
      `${f.gc_scavenges} / ${f.gc_mark_sweeps} / ${f.gc_pause_ms}`,
      "reported",
    ],
  ],
);
