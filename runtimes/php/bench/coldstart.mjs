#!/usr/bin/env node
// @ts-check
/**
 * Cold start of the PHP runtime without the platform around it: spawn `php server.php` as the
 * process backend does, wait for /healthz, let it sit warm `idle-ms` (a pool instance), then
 * time specialize (JSON form) plus the first call, each on a fresh connection: the part of a
 * cold start through the gateway that happens at the instance.
 *
 *   node runtimes/php/bench/coldstart.mjs [samples=20] [idle-ms=300] [script|handler]
 *
 * `script` is Fission's hello world (echo), `handler` a `function handler($context)` writing to
 * the PSR-7 response. Prints p50/p99 of spawn->healthz, specialize, the runtime's own loadMs,
 * the first call, and specialize-to-first-answer. Not a test: it asserts nothing.
 */
import { spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const SAMPLES = Number(process.argv[2] ?? 20);
const IDLE_MS = Number(process.argv[3] ?? 300);
const FORM = process.argv[4] ?? "script";
const PHP = process.env.FIZZ_PHP ?? "/usr/bin/php";
const NICE = process.env.FIZZ_BENCH_NICE; // e.g. -10: measure the runtime, not a loaded machine
const SERVER = fileURLToPath(new URL("../server.php", import.meta.url));
const SOURCES = {
  script: `<?php\necho "Hello, world!\\n";\n`,
  handler: `<?php\nfunction handler($context)\n{\n    $context['response']->getBody()->write("Hello, world!\\n");\n}\n`,
};
const HELLO = FORM === "handler" ? SOURCES.handler : SOURCES.script;

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      const port = typeof address === "object" && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * @param {number} port @param {string} method @param {string} path @param {string} [body]
 * @param {Record<string, string>} [headers]
 * @returns {Promise<{status: number, text: string}>}
 */
function call(port, method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, method, path, headers, agent: false },
      (res) => {
        let text = "";
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const now = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

/** @param {number[]} xs @param {number} q */
function quantile(xs, q) {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

async function sample() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "fizz-php-bench-"));
  const started = now();
  const [command, args] = NICE ? ["nice", ["-n", NICE, PHP, SERVER]] : [PHP, [SERVER]];
  const proc = spawn(command, args, {
    env: {
      PATH: "/usr/local/bin:/usr/bin:/bin",
      LANG: "C.UTF-8",
      PORT: String(port),
      HOST: "127.0.0.1",
      FIZZ_WORKDIR: dir,
      HOME: dir,
      TMPDIR: dir,
    },
    stdio: ["ignore", "ignore", "ignore"],
  });
  try {
    for (;;) {
      try {
        if ((await call(port, "GET", "/healthz")).status === 200) break;
      } catch {
        // not listening yet
      }
      await sleep(2);
    }
    const healthy = now() - started;
    await sleep(IDLE_MS);
    const body = JSON.stringify({
      function: { namespace: "default", name: "hello", revision: 1 },
      filename: "hello.php",
      code: Buffer.from(HELLO).toString("base64"),
    });
    const t0 = now();
    const spec = await call(port, "POST", "/v2/specialize", body, {
      "content-type": "application/json",
    });
    const t1 = now();
    const first = await call(port, "GET", "/");
    const t2 = now();
    if (spec.status !== 200 || first.text !== "Hello, world!\n") {
      throw new Error(`bad run: ${spec.text} ${first.text}`);
    }
    return {
      healthy,
      specialize: t1 - t0,
      loadMs: JSON.parse(spec.text).loadMs,
      first: t2 - t1,
      total: t2 - t0,
    };
  } finally {
    proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

const runs = [];
for (let i = 0; i < SAMPLES; i++) runs.push(await sample());
console.log(`php ${FORM} hello, ${SAMPLES} samples`);
for (const key of /** @type {const} */ (["healthy", "specialize", "loadMs", "first", "total"])) {
  const xs = runs.map((r) => r[key]);
  console.log(
    `${key.padEnd(12)} p50 ${quantile(xs, 0.5).toFixed(2)} ms  p99 ${quantile(xs, 0.99).toFixed(2)} ms`,
  );
}
