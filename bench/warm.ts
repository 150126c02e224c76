// Warm throughput: the gateway, nginx, Go's reverse proxy and the instance directly, same instance,
// same load generator, side by side; and the CPU each process spends per request.
// `npm run bench` runs it as its first section; alone: `npx tsx bench/warm.ts` (a platform of its own).
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { freePort, portOpen, waitFor } from "@fizz/testkit";
import { ensureWrk, wrk, wrkMetered, type LoadResult } from "./lib/load";
import { startGatewayCopy } from "./lib/gateway-copy";
import { ensureNginx, startNginx } from "./lib/nginx";
import { code, pidOfInstance, startBenchPlatform, type BenchPlatform } from "./lib/platform";
import { round } from "./lib/stats";

const ROOT = path.resolve(import.meta.dirname, "..");

/**
 * CPU per request (`*_cpu_us_per_req`): user + system time of the proxy process over its measured
 * run, and of the instance behind it (`instance_cpu_us_per_req_<target>`), over requests served.
 */
export interface WarmFigures {
  gateway_rps: number;
  direct_rps: number;
  go_proxy_rps: number;
  nginx_rps: number;
  /** The same gateway on node's http.Server (FIZZ_GATEWAY_FRONTEND=node; the default is `own`). */
  gateway_node_rps: number;
  gateway_node_vs_nginx: number;
  gateway_node_cpu_us_per_req: number;
  instance_cpu_us_per_req_gateway_node: number;
  gateway_p50_ms: number;
  gateway_p99_ms: number;
  direct_p50_ms: number;
  go_proxy_p50_ms: number;
  go_proxy_p99_ms: number;
  nginx_p50_ms: number;
  nginx_p99_ms: number;
  gateway_vs_go: number;
  gateway_vs_nginx: number;
  gateway_cpu_us_per_req: number;
  nginx_cpu_us_per_req: number;
  go_proxy_cpu_us_per_req: number;
  instance_cpu_us_per_req_gateway: number;
  instance_cpu_us_per_req_nginx: number;
  instance_cpu_us_per_req_go_proxy: number;
  instance_cpu_us_per_req_direct: number;
  /** A 512-byte POST through the gateway and through nginx (the same instance; body read whole). */
  gateway_post_rps: number;
  nginx_post_rps: number;
  gateway_post_vs_nginx: number;
  gateway_post_cpu_us_per_req: number;
  nginx_post_cpu_us_per_req: number;
  errors: number;
  connections: number;
  seconds: number;
}

export const NODE_HELLO =
  'module.exports = async () => ({ status: 200, body: "Hello, world!\\n" });\n';

export function buildGoProxy(): string {
  const out = path.join(ROOT, ".fizz", "bench", "goproxy");
  mkdirSync(path.dirname(out), { recursive: true });
  const r = spawnSync("go", ["build", "-o", out, "."], {
    cwd: path.join(ROOT, "bench/baselines/goproxy"),
    stdio: "inherit",
  });
  if (r.status !== 0) throw new Error("could not build the Go baseline (needs Go on PATH)");
  return out;
}

/** Installs/builds what the warm section needs before the platform starts (fails fast). */
export function prepareWarm(): { goproxyBin: string } {
  ensureWrk();
  ensureNginx();
  return { goproxyBin: buildGoProxy() };
}

/**
 * Creates the `warm` function (one instance, route /warm) and measures the four targets.
 * `duringGateway` runs alongside the gateway's measured run (memory under load: run.ts).
 */
export async function measureWarm(
  p: BenchPlatform,
  opts: {
    goproxyBin: string;
    seconds: number;
    connections: number;
    warmupSeconds: number;
    /** The measured seconds split into this many turns per target (default 1). */
    rounds?: number;
    duringGateway?: () => Promise<void>;
  },
): Promise<{ warm: WarmFigures; instanceId: string }> {
  await p.api("POST", "/v1/namespaces/default/functions", {
    name: "warm",
    spec: {
      environment: "nodejs",
      code: code("f.js", NODE_HELLO),
      concurrency: 1000,
      maxInstances: 1,
    },
  });
  await p.api("POST", "/v1/namespaces/default/httptriggers", {
    name: "warm",
    spec: { function: "warm", path: "/warm", methods: ["GET", "POST"] },
  });
  await waitFor(async () => (await fetch(`${p.gatewayUrl}/warm`)).status === 200, {
    timeoutMs: 20_000,
  });
  const inst = (await p.instances()).find((i) => i.function?.name === "warm");
  if (!inst) throw new Error("no instance serves the warm function");
  const instancePid = await pidOfInstance(inst.id);
  const gatewayPid = p.pids.gateway;
  if (instancePid === undefined || gatewayPid === undefined)
    throw new Error("no pid for the warm instance or the gateway");
  const goPort = await freePort();
  const go = spawn(opts.goproxyBin, ["-listen", `127.0.0.1:${goPort}`, "-target", inst.address], {
    stdio: "ignore",
  });
  const nginx = await startNginx(inst.address).catch((err: unknown) => {
    go.kill();
    throw err;
  });
  const alt = await startGatewayCopy(gatewayPid, { FIZZ_GATEWAY_FRONTEND: "node" }, ROOT).catch(
    (err: unknown) => {
      go.kill();
      nginx.stop();
      throw err;
    },
  );
  try {
    await waitFor(async () => (await fetch(`${alt.url}/warm`)).status === 200, {
      timeoutMs: 20_000,
    });
    await waitFor(() => portOpen(goPort));
    const targets = {
      direct: { url: `${inst.address}/warm`, pid: undefined },
      gateway: { url: `${p.gatewayUrl}/warm`, pid: gatewayPid },
      go_proxy: { url: `http://127.0.0.1:${goPort}/warm`, pid: go.pid },
      nginx: { url: `${nginx.url}/warm`, pid: nginx.workerPid },
      gateway_node: { url: `${alt.url}/warm`, pid: alt.pid },
      gateway_post: { url: `${p.gatewayUrl}/warm`, pid: gatewayPid, post: POST_BYTES },
      nginx_post: { url: `${nginx.url}/warm`, pid: nginx.workerPid, post: POST_BYTES },
    };
    // The gateway needs ~3 s of traffic before V8 has optimized its hot path; warm every target.
    for (const t of Object.values(targets))
      await wrk(t.url, { connections: opts.connections, seconds: opts.warmupSeconds, ...post(t) });
    // In rounds, the four targets taking turns, so a busy spell on a shared machine falls on all
    // of them rather than on whichever ran then.
    const rounds = Math.max(1, opts.rounds ?? 1);
    const load = { connections: opts.connections, seconds: opts.seconds / rounds };
    const runs: Record<keyof typeof targets, Metered[]> = {
      direct: [],
      gateway: [],
      go_proxy: [],
      nginx: [],
      gateway_node: [],
      gateway_post: [],
      nginx_post: [],
    };
    let during: Promise<void> | undefined;
    for (let i = 0; i < rounds; i++) {
      for (const [name, t] of Object.entries(targets) as [keyof typeof targets, Target][]) {
        if (name === "gateway" && i === Math.floor(rounds / 2)) during = opts.duringGateway?.();
        const pids = t.pid === undefined ? [instancePid] : [instancePid, t.pid];
        runs[name].push(await wrkMetered(t.url, { ...load, ...post(t) }, pids));
        if (name === "gateway") await during;
      }
    }
    const direct = combine(runs.direct);
    const gateway = combine(runs.gateway);
    const goproxy = combine(runs.go_proxy);
    const ngx = combine(runs.nginx);
    const gwNode = combine(runs.gateway_node);
    const gwPost = combine(runs.gateway_post);
    const ngxPost = combine(runs.nginx_post);
    const errors = (...rs: LoadResult[]) => rs.reduce((a, r) => a + r.errors, 0);
    const us = (n: number) => round(n, 1);
    return {
      instanceId: inst.id,
      warm: {
        gateway_rps: round(gateway.rps, 0),
        direct_rps: round(direct.rps, 0),
        go_proxy_rps: round(goproxy.rps, 0),
        nginx_rps: round(ngx.rps, 0),
        gateway_node_rps: round(gwNode.rps, 0),
        gateway_node_vs_nginx: round(gwNode.rps / ngx.rps, 2),
        gateway_node_cpu_us_per_req: us(gwNode.proxyCpu),
        instance_cpu_us_per_req_gateway_node: us(gwNode.instanceCpu),
        gateway_p50_ms: round(gateway.p50Ms, 3),
        gateway_p99_ms: round(gateway.p99Ms, 3),
        direct_p50_ms: round(direct.p50Ms, 3),
        go_proxy_p50_ms: round(goproxy.p50Ms, 3),
        go_proxy_p99_ms: round(goproxy.p99Ms, 3),
        nginx_p50_ms: round(ngx.p50Ms, 3),
        nginx_p99_ms: round(ngx.p99Ms, 3),
        gateway_vs_go: round(gateway.rps / goproxy.rps, 2),
        gateway_vs_nginx: round(gateway.rps / ngx.rps, 2),
        gateway_cpu_us_per_req: us(gateway.proxyCpu),
        nginx_cpu_us_per_req: us(ngx.proxyCpu),
        go_proxy_cpu_us_per_req: us(goproxy.proxyCpu),
        instance_cpu_us_per_req_gateway: us(gateway.instanceCpu),
        instance_cpu_us_per_req_nginx: us(ngx.instanceCpu),
        instance_cpu_us_per_req_go_proxy: us(goproxy.instanceCpu),
        instance_cpu_us_per_req_direct: us(direct.instanceCpu),
        gateway_post_rps: round(gwPost.rps, 0),
        nginx_post_rps: round(ngxPost.rps, 0),
        gateway_post_vs_nginx: round(gwPost.rps / ngxPost.rps, 2),
        gateway_post_cpu_us_per_req: us(gwPost.proxyCpu),
        nginx_post_cpu_us_per_req: us(ngxPost.proxyCpu),
        errors: errors(gateway, direct, goproxy, ngx, gwNode, gwPost, ngxPost),
        connections: opts.connections,
        seconds: opts.seconds,
      },
    };
  } finally {
    go.kill();
    nginx.stop();
    await alt.stop();
  }
}

type Target = { url: string; pid: number | undefined; post?: number };

/** The POST targets' body size: a small JSON document's, as webhooks and API calls send. */
const POST_BYTES = 512;

const post = (t: Target) => (t.post !== undefined ? { post: t.post } : {});
type Metered = LoadResult & { cpuUsPerReq: number[] };

/** Rounds of one target as one figure: rates over all requests, latencies the rounds' median. */
function combine(rs: Metered[]): LoadResult & { instanceCpu: number; proxyCpu: number } {
  const requests = rs.reduce((a, r) => a + r.requests, 0);
  const weighted = (i: number) =>
    rs.reduce((a, r) => a + (r.cpuUsPerReq[i] ?? Number.NaN) * r.requests, 0) / requests;
  const median = (f: (r: Metered) => number) => {
    const v = rs.map(f).sort((a, b) => a - b);
    return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
  };
  return {
    // Rounds are equally long: the mean of their rates is the rate over the whole time.
    rps: rs.reduce((a, r) => a + r.rps, 0) / rs.length,
    p50Ms: median((r) => r.p50Ms),
    p99Ms: median((r) => r.p99Ms),
    errors: rs.reduce((a, r) => a + r.errors, 0),
    requests,
    instanceCpu: weighted(0),
    proxyCpu: weighted(1),
  };
}

/** Table rows: [label, value, target]. */
export function warmRows(w: WarmFigures): [string, string, string][] {
  return [
    [
      "warm rps: gateway / nginx / Go proxy / direct",
      `${w.gateway_rps} / ${w.nginx_rps} / ${w.go_proxy_rps} / ${w.direct_rps}`,
      "gateway >= 0.75x nginx, >= 1.5x Go",
    ],
    [
      "warm gateway vs nginx / vs Go proxy",
      `${w.gateway_vs_nginx}x / ${w.gateway_vs_go}x`,
      ">= 0.75x / >= 1.5x",
    ],
    [
      "warm, the gateway on node's http.Server (FIZZ_GATEWAY_FRONTEND=node): rps / vs nginx / CPU us/req / instance CPU us/req",
      `${w.gateway_node_rps} / ${w.gateway_node_vs_nginx}x / ${w.gateway_node_cpu_us_per_req} / ` +
        `${w.instance_cpu_us_per_req_gateway_node}`,
      "reported",
    ],
    [
      "warm POST (512 B): gateway / nginx rps, vs nginx, CPU us/req gateway / nginx",
      `${w.gateway_post_rps} / ${w.nginx_post_rps}, ${w.gateway_post_vs_nginx}x, ` +
        `${w.gateway_post_cpu_us_per_req} / ${w.nginx_post_cpu_us_per_req}`,
      "reported",
    ],
    [
      "warm p50 / p99 ms: gateway, nginx, Go proxy",
      `${w.gateway_p50_ms} / ${w.gateway_p99_ms}, ${w.nginx_p50_ms} / ${w.nginx_p99_ms}, ` +
        `${w.go_proxy_p50_ms} / ${w.go_proxy_p99_ms}`,
      "",
    ],
    [
      "warm proxy CPU us/req: gateway / nginx / Go proxy",
      `${w.gateway_cpu_us_per_req} / ${w.nginx_cpu_us_per_req} / ${w.go_proxy_cpu_us_per_req}`,
      "",
    ],
    [
      "warm instance CPU us/req: via gateway / nginx / Go / direct",
      `${w.instance_cpu_us_per_req_gateway} / ${w.instance_cpu_us_per_req_nginx} / ` +
        `${w.instance_cpu_us_per_req_go_proxy} / ${w.instance_cpu_us_per_req_direct}`,
      "",
    ],
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = Number(process.env.FIZZ_BENCH_WARM_SECONDS ?? 10);
  const rounds = Number(process.env.FIZZ_BENCH_WARM_ROUNDS ?? 5);
  const { goproxyBin } = prepareWarm();
  const logFile = path.join(ROOT, "bench/results/warm-platform.log");
  mkdirSync(path.dirname(logFile), { recursive: true });
  const p = await startBenchPlatform(logFile);
  try {
    await p.api("POST", "/v1/namespaces/default/environments", {
      name: "nodejs",
      spec: { image: "fizz/env-node", poolSize: 1 },
    });
    const { warm } = await measureWarm(p, {
      goproxyBin,
      seconds,
      connections: 50,
      warmupSeconds: Math.min(5, seconds),
      rounds,
    });
    console.log(JSON.stringify(warm, null, 2));
    const rows = warmRows(warm);
    const wa = Math.max(...rows.map((r) => r[0].length));
    for (const [a, b, c] of rows) console.log(`${a.padEnd(wa)}  ${b}  ${c}`);
  } finally {
    await p.stop();
  }
}
