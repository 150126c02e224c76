#!/usr/bin/env node
// @ts-check
/**
 * Cold-start harness for the runtimes, without the platform around them: spawn a runtime the way
 * the process backend does, wait for /healthz, specialize it with a hello world, send the first
 * request, then time warm requests on a kept-alive connection. Median (and p90) of N samples.
 *
 *   node runtimes/node/bench/coldstart.mjs [node|node-esm|node-pkg|python|all] [samples] [idle-ms] [base]
 *
 * `base`: another runtimes/ directory (e.g. a `git archive` of an older commit) measured in the
 * same run, sample for sample alternating with this one, so that load from other processes on
 * the machine falls on both alike.
 *
 * The figures are what the cold path through the gateway pays inside and at the instance:
 * - spawn→healthz: process start until GET /healthz answers 200, probed every 2 ms so that the
 *   figure is not quantized by a back-off. FIZZ_BENCH_PROBE=backoff probes like the poolkeeper's
 *   process backend instead (5 ms, doubling up to 100 ms), to see what that schedule adds;
 * - specialize: the POST /v2/specialize round trip on a fresh connection, and the `loadMs` the
 *   runtime reports. It is sent `idle-ms` after /healthz answered: 0 is the empty pool (the
 *   instance was started for this request), the default 300 a warm pool (the instance waited);
 * - first request: the first call of the function on a fresh connection (as the gateway's first
 *   proxied request);
 * - main-thread CPU: CPU time of the runtime's main thread from its start to the first answer;
 * - warm: median round trip of sequential calls on one kept-alive connection.
 * `node-pkg` specializes with a two-file package in the archive form (a JSON line, then a tar.gz).
 * FIZZ_BENCH_EMPTY_POOL=1 starts each instance as the process backend does for a request waiting
 * on an empty pool: FIZZ_WARM_UP=0 (no rehearsal), a specialize token and the code's digest, and
 * Node's one-file build (node/.build/server.cjs) when the runtimes directory has one.
 * Not a test: it asserts nothing and is run by hand.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { call } from "./http-call.mjs";

const which = process.argv[2] ?? "all";
const SAMPLES = Number(process.argv[3] ?? 20);
const IDLE_MS = Number(process.argv[4] ?? 300);
const BACKOFF = process.env.FIZZ_BENCH_PROBE === "backoff";
const EMPTY_POOL = process.env.FIZZ_BENCH_EMPTY_POOL === "1";
const TOKEN = "bench-specialize-token";
const HERE = fileURLToPath(new URL("../..", import.meta.url));
const BASE = process.argv[5] ? resolve(process.argv[5]) : undefined;
const WARM_CALLS = 200;
const NODE_HELLO = `module.exports = async (context) => ({ status: 200, body: "Hello, world!\\n" });\n`;
/**
 * `files`: a package, sent in the archive form (a JSON line, then a tar.gz) instead of one file.
 * @type {Record<string, { command: (runtimes: string) => string[], filename: string, source: string, files?: Record<string, string> }>}
 */
const FUNCTIONS = {
  node: {
    command: (runtimes) => [process.execPath, join(runtimes, "node/server.mjs")],
    filename: "hello.js",
    source: NODE_HELLO,
  },
  "node-esm": {
    command: (runtimes) => [process.execPath, join(runtimes, "node/server.mjs")],
    filename: "hello.mjs",
    source: NODE_HELLO.replace("module.exports =", "export default"),
  },
  "node-pkg": {
    command: (runtimes) => [process.execPath, join(runtimes, "node/server.mjs")],
    filename: "index.js",
    source: NODE_HELLO,
    files: {
      "index.js": `const { hello } = require("./lib/hello");\nmodule.exports = async () => hello();\n`,
      "lib/hello.js": `exports.hello = () => ({ status: 200, body: "Hello, world!\\n" });\n`,
    },
  },
  python: {
    command: (runtimes) => [
      process.env.FIZZ_PYTHON ?? "python3",
      join(runtimes, "python/server.py"),
    ],
    filename: "hello.py",
    source: `def main():\n    print("Hello, world!")\n`,
  },
};

/**
 * Node's one-file build instead of server.mjs, as the process backend starts it (empty-pool mode).
 * @param {string[]} argv
 */
function launched(argv) {
  const [bin, script] = argv;
  if (!EMPTY_POOL || !script?.endsWith("/node/server.mjs")) return argv;
  const built = join(dirname(script), ".build/server.cjs");
  try {
    readFileSync(built);
    return [/** @type {string} */ (bin), built];
  } catch {
    return argv;
  }
}

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {net.AddressInfo} */ (probe.address());
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

const sha256 = (/** @type {Buffer} */ b) =>
  `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** @type {Map<Record<string, string>, Buffer>} */
const packages = new Map();
/**
 * A tar.gz of the files, made once per run by node-tar (the runtime's own dependency).
 * @param {Record<string, string>} files
 */
async function packageOf(files) {
  const cached = packages.get(files);
  if (cached) return cached;
  const { create } = await import("tar");
  const dir = mkdtempSync(join(tmpdir(), "fizz-coldstart-pkg-"));
  try {
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), content);
    }
    /** @type {Buffer[]} */
    const chunks = [];
    for await (const chunk of create({ gzip: true, portable: true, cwd: dir }, ["."])) {
      chunks.push(/** @type {Buffer} */ (chunk));
    }
    const archive = Buffer.concat(chunks);
    packages.set(files, archive);
    return archive;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * CPU time of the process's main thread so far (/proc/<pid>/schedstat, ns): what start-up,
 * specialize and the first call cost on the thread that serves, less sensitive than wall time to
 * other load on the machine. NaN where /proc has no schedstat.
 * @param {number | undefined} pid
 */
function mainThreadCpuMs(pid) {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[0]) / 1e6;
  } catch {
    return NaN;
  }
}

/**
 * @param {string} kind
 * @param {string} runtimes
 */
async function sample(kind, runtimes) {
  const fn = FUNCTIONS[kind];
  if (!fn) throw new Error(`unknown runtime ${kind}`);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "fizz-coldstart-"));
  const id = `bench-${port}`;
  const [file, ...args] = launched(fn.command(runtimes));
  const t0 = performance.now();
  const proc = spawn(/** @type {string} */ (file), args, {
    // What the process backend gives an instance (instanceBaseEnv), not this shell's environment:
    // a NODE_EXTRA_CA_CERTS there alone adds ~40 ms of CPU to each Node start (the bundle parsed).
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      LANG: "C.UTF-8",
      ...(process.env.TZ ? { TZ: process.env.TZ } : {}),
      HOME: dir,
      PYTHONUNBUFFERED: "1",
      PORT: String(port),
      HOST: "127.0.0.1",
      FIZZ_INSTANCE_ID: id,
      FIZZ_WORKDIR: dir,
      FIZZ_PARENT_STDIN: "1",
      ...(EMPTY_POOL ? { FIZZ_WARM_UP: "0", FIZZ_SPECIALIZE_TOKEN: TOKEN } : {}),
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  proc.stdout.resume();
  let stderr = "";
  proc.stderr.on("data", (d) => (stderr += d));
  try {
    let probes = 0;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`exited: ${stderr}`);
      if (performance.now() - t0 > 10_000) throw new Error(`no /healthz: ${stderr}`);
      try {
        if ((await call(port, { path: "/healthz" })).status === 200) break;
      } catch {
        await sleep(BACKOFF ? Math.min(100, 5 * 2 ** probes++) : 2);
      }
    }
    const healthz = performance.now() - t0;
    if (IDLE_MS > 0) await sleep(IDLE_MS);

    const meta = {
      instanceId: id,
      function: { namespace: "default", name: "hello", revision: 1 },
      concurrency: 10,
    };
    const archive = fn.files ? await packageOf(fn.files) : undefined;
    const body = archive
      ? Buffer.concat([
          Buffer.from(`${JSON.stringify({ ...meta, digest: sha256(archive) })}\n`),
          archive,
        ])
      : JSON.stringify({
          ...meta,
          filename: fn.filename,
          code: Buffer.from(fn.source).toString("base64"),
          ...(EMPTY_POOL ? { digest: sha256(Buffer.from(fn.source)) } : {}),
        });
    const contentType = archive ? "application/vnd.fizz.specialize+tar" : "application/json";
    const s0 = performance.now();
    const spec = await call(port, {
      method: "POST",
      path: "/v2/specialize",
      headers: {
        "content-type": contentType,
        ...(EMPTY_POOL ? { "x-fizz-specialize-token": TOKEN } : {}),
      },
      body,
    });
    const specialize = performance.now() - s0;
    if (spec.status !== 200) throw new Error(`specialize ${spec.status}: ${spec.text}`);
    const loadMs = JSON.parse(spec.text).loadMs;

    const headers = { "x-fizz-instance": id, "x-request-id": "r" };
    const f0 = performance.now();
    const first = await call(port, { path: "/", headers });
    const firstMs = performance.now() - f0;
    if (first.status !== 200) throw new Error(`first ${first.status}: ${first.text}`);
    const cpu = mainThreadCpuMs(proc.pid);

    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    await call(port, { headers, agent }); // opens the kept-alive connection
    const warm = [];
    for (let i = 0; i < WARM_CALLS; i++) {
      const w0 = performance.now();
      await call(port, { headers, agent });
      warm.push(performance.now() - w0);
    }
    agent.destroy();
    return { healthz, specialize, loadMs, first: firstMs, cpu, warm: median(warm) };
  } finally {
    proc.kill("SIGKILL");
    await new Promise((r) =>
      proc.exitCode !== null || proc.signalCode ? r(0) : proc.once("exit", r),
    );
    rmSync(dir, { recursive: true, force: true });
  }
}

/** @param {number[]} xs @param {number} p */
function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}
/** @param {number[]} xs */
const median = (xs) => percentile(xs, 50);

const LABELS = {
  healthz: "spawn→healthz",
  specialize: "specialize RTT",
  loadMs: "loadMs (runtime)",
  first: "first request",
  cpu: "main-thread CPU to 1st req",
  warm: "warm request (keep-alive)",
};

/** @param {string} kind */
async function run(kind) {
  /** @type {Array<[string, string]>} */
  const variants = BASE
    ? [
        ["base", BASE],
        ["this", HERE],
      ]
    : [["this", HERE]];
  /** @type {Array<Record<string, number[]>>} */
  const series = variants.map(() => ({
    healthz: [],
    specialize: [],
    loadMs: [],
    first: [],
    cpu: [],
    warm: [],
  }));
  for (const [, dir] of variants) await sample(kind, dir); // cold disk caches; not counted
  for (let i = 0; i < SAMPLES; i++) {
    for (const [j, [, dir]] of variants.entries()) {
      const r = await sample(kind, dir);
      for (const [k, v] of Object.entries(r)) series[j]?.[k]?.push(v);
      await sleep(50); // let the killed process's teardown finish off the clock
    }
  }
  console.log(
    `${kind}: ${SAMPLES} samples, specialize ${IDLE_MS} ms after healthz; median / p90 ms`,
  );
  console.log(`  ${"".padEnd(26)} ${variants.map(([name]) => String(name).padStart(17)).join("")}`);
  for (const [k, label] of Object.entries(LABELS)) {
    const cells = series.map((s) => {
      const v = s[k] ?? [];
      return `${median(v).toFixed(2)} / ${percentile(v, 90).toFixed(2)}`.padStart(17);
    });
    console.log(`  ${label.padEnd(26)} ${cells.join("")}`);
  }
}

const kinds = which === "all" ? Object.keys(FUNCTIONS) : which.split(",");
for (const kind of kinds) await run(kind);
