#!/usr/bin/env node
// @ts-check
/**
 * A/B of a taken (empty-pool) Node start, the instance's side only: each variant is started as
 * the process backend starts an instance for a waiting specialize (its environment only: PATH,
 * LANG, HOME, the instance's variables, FIZZ_WARM_UP=0, the readiness socketpair on fd 3, its own
 * session), then specialized with a hello world and called once. Variants run alternately, sample
 * for sample, so that load from other processes falls on all alike.
 *
 *   [FIZZ_BENCH_BUSY=n] node runtimes/node/bench/taken-start.mjs [samples] [variants.json]
 *
 * variants.json: `[{ "name", "args"?: [node flags], "env"?: {...}, "entry"?: file,
 * "autogroupNice"?: n }]` (autogroupNice: written to /proc/<pid>/autogroup right after the spawn,
 * as StartPriority does for refills; a negative one needs root); without it:
 * the runtime as the process backend starts it (start-cached.cjs) against `floor`, the least any
 * Node HTTP runtime does on that path (listen, announce, take one JSON POST, answer one GET), so
 * the difference is what the runtime itself costs over Node. Not a test: it asserts nothing.
 *
 * Figures, medians in ms from the spawn: `ready` (fd 3 read), `specialized` (its answer read),
 * `answered` (the first call's answer read); `cpu`: the instance's CPU (all its threads,
 * /proc/<pid>/task/<tid>/schedstat) up to the first answer, the figure least moved by load.
 * A V8 flag (--max-semi-space-size, --stack-trace-limit, ...) makes V8 reject the code cache,
 * which is built without flags: compare such a variant with `server.cjs` (no cache) as the entry.
 * FIZZ_BENCH_BUSY=n runs n busy loops, each its own session (autogroup) like another tenant's
 * process, for the whole run: with n = the number of cores, the instance competes for the CPU.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { call } from "./http-call.mjs";

const SAMPLES = Number(process.argv[2] ?? 15);
const NODE_DIR = fileURLToPath(new URL("..", import.meta.url));
const TOKEN = "bench-token";
const SOURCE = `module.exports = async () => ({ status: 200, body: "Hello, world!\\n" });\n`;
const FLOOR = `"use strict";
const { writeSync, closeSync } = require("node:fs");
let fn;
require("node:http").createServer({ noDelay: true, keepAlive: true }, (req, res) => {
  if (req.method !== "POST") return void Promise.resolve(fn()).then((r) => res.end(r.body));
  const chunks = [];
  req.on("data", (c) => chunks.push(c)).on("end", () => {
    const m = { exports: {} };
    const code = Buffer.from(JSON.parse(Buffer.concat(chunks).toString()).code, "base64").toString();
    new Function("module", "exports", code)(m, m.exports);
    fn = m.exports;
    res.setHeader("content-type", "application/json");
    res.end('{"status":"specialized"}');
  });
}).listen(Number(process.env.PORT), process.env.HOST, () => { writeSync(3, "ready\\n"); closeSync(3); });
`;

/** @typedef {{ name: string, args?: string[], env?: Record<string, string>, entry?: string, autogroupNice?: number }} Variant */

/** @returns {Variant[]} */
function variants() {
  if (process.argv[3]) return JSON.parse(readFileSync(process.argv[3], "utf8"));
  const floor = join(mkdtempSync(join(tmpdir(), "fizz-taken-floor-")), "floor.cjs");
  writeFileSync(floor, FLOOR);
  return [{ name: "runtime (start-cached.cjs)" }, { name: "floor", entry: floor }];
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

/** CPU of all the process's threads so far, ms. @param {number} pid */
function cpuMs(pid) {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return ns / 1e6;
}

const BODY = JSON.stringify({
  instanceId: "bench",
  function: { namespace: "default", name: "hello", revision: 1 },
  concurrency: 10,
  filename: "hello.js",
  code: Buffer.from(SOURCE).toString("base64"),
  digest: `sha256:${createHash("sha256").update(SOURCE).digest("hex")}`,
});

/** @param {Variant} v */
async function sample(v) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "fizz-taken-"));
  const env = {
    PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    LANG: "C.UTF-8",
    HOME: dir,
    TMPDIR: dir,
    PORT: String(port),
    HOST: "127.0.0.1",
    FIZZ_INSTANCE_ID: "bench",
    FIZZ_WORKDIR: dir,
    FIZZ_PARENT_STDIN: "1",
    FIZZ_SPECIALIZE_TOKEN: TOKEN,
    FIZZ_READY_FD: "3",
    FIZZ_WARM_UP: "0",
    ...v.env,
  };
  const entry = v.entry ?? join(NODE_DIR, "start-cached.cjs");
  const t0 = performance.now();
  const proc = spawn(process.execPath, [...(v.args ?? []), entry], {
    cwd: dir,
    env,
    stdio: ["pipe", "pipe", "pipe", "pipe"],
    detached: true,
  });
  if (v.autogroupNice !== undefined && proc.pid !== undefined)
    writeFileSync(`/proc/${proc.pid}/autogroup`, String(v.autogroupNice));
  let stderr = "";
  proc.stdout?.resume();
  proc.stderr?.on("data", (d) => (stderr += d));
  try {
    await new Promise((resolve, reject) => {
      let said = "";
      proc.stdio[3]?.on("data", (d) => (said += d) === "ready\n" && resolve(undefined));
      proc.once("exit", () => reject(new Error(`${v.name} exited: ${stderr}`)));
    });
    const ready = performance.now() - t0;
    const spec = await call(port, {
      method: "POST",
      path: "/v2/specialize",
      headers: { "content-type": "application/json", "x-fizz-specialize-token": TOKEN },
      body: BODY,
    });
    if (spec.status !== 200) throw new Error(`${v.name}: specialize ${spec.status} ${spec.text}`);
    const specialized = performance.now() - t0;
    const first = await call(port, {
      headers: { "x-fizz-instance": "bench", "x-request-id": "r" },
    });
    if (first.status !== 200) throw new Error(`${v.name}: call ${first.status} ${first.text}`);
    const answered = performance.now() - t0;
    return { ready, specialized, answered, cpu: cpuMs(/** @type {number} */ (proc.pid)) };
  } finally {
    proc.kill("SIGKILL");
    if (proc.exitCode === null && proc.signalCode === null)
      await new Promise((r) => proc.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** @param {number[]} xs */
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

const busy = Array.from({ length: Number(process.env.FIZZ_BENCH_BUSY ?? 0) }, () =>
  spawn(process.execPath, ["-e", "for (;;);"], { detached: true, stdio: "ignore" }),
);
busy.forEach((b) => b.unref()); // they must not keep this process alive
// Also when a sample throws: detached, they would outlive this process.
process.on("exit", () => busy.forEach((b) => b.kill("SIGKILL")));
const list = variants();
/** @type {Array<Record<string, number[]>>} */
const series = list.map(() => ({ ready: [], specialized: [], answered: [], cpu: [] }));
for (const v of list) await sample(v); // cold disk caches; not counted
const loadBefore = load();
for (let i = 0; i < SAMPLES; i++) {
  for (const [j, v] of list.entries()) {
    const r = await sample(v);
    for (const [k, x] of Object.entries(r)) series[j]?.[k]?.push(x);
    await new Promise((r) => setTimeout(r, 50)); // the killed one's teardown, off the clock
  }
}
console.log(`${SAMPLES} samples each, alternating; load ${loadBefore} -> ${load()}; medians, ms`);
for (const [j, v] of list.entries()) {
  const cells = Object.entries(series[j] ?? {}).map(([k, xs]) => `${k} ${median(xs).toFixed(1)}`);
  console.log(`  ${v.name.padEnd(28)} ${cells.join("  ")}`);
}
