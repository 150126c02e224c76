// Measures what a cold start costs the C# runtime once an instance is warm in the pool: the time
// from POST /v2/specialize (archive form, Fission's hello world compiled by build.sh) to the first
// answer of the function, over fresh runtime processes. Usage:
//   node runtimes/dotnet/bench/specialize-first-answer.mjs [runs=20] [mono options...]
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { prepare } from "../prepare.mjs";

const here = fileURLToPath(new URL("..", import.meta.url));
const runs = Number(process.argv[2] ?? 20);
const monoOptions = process.argv.slice(3);
const HELLO = `using Fission.DotNetCore.Api;
public class FissionFunction { public string Execute(FissionContext context) { return "Hello, world!\\n"; } }
`;

const prepared = await prepare({});
if (!prepared.ok) throw new Error(prepared.reason);
const work = mkdtempSync(join(tmpdir(), "fizz-dotnet-bench-"));
mkdirSync(join(work, "src"));
mkdirSync(join(work, "out"));
writeFileSync(join(work, "src", "hello.cs"), HELLO);
execFileSync(join(here, "build.sh"), [], {
  cwd: join(work, "src"),
  env: { ...process.env, SRC_PKG: join(work, "src"), DEPLOY_PKG: join(work, "out"), TMPDIR: work },
});
execFileSync("tar", ["czf", join(work, "pkg.tgz"), "-C", join(work, "out"), "."]);
const archive = readFileSync(join(work, "pkg.tgz"));
const line = JSON.stringify({
  function: { namespace: "default", name: "hello", revision: 1 },
  digest: `sha256:${createHash("sha256").update(archive).digest("hex")}`,
});
const body = Buffer.concat([Buffer.from(`${line}\n`), archive]);

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = /** @type {import("node:net").AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });

/** @returns {Promise<{ status: number, text: string }>} */
function call(port, method, path, headers = {}, data = undefined) {
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
    req.end(data);
  });
}

const times = [];
const starts = [];
const specs = [];
for (let i = 0; i < runs; i++) {
  const port = await freePort();
  const dir = join(work, `w${i}`);
  const t0 = performance.now();
  const proc = spawn("mono", [...monoOptions, prepared.exe], {
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      HOST: "127.0.0.1",
      FIZZ_WORKDIR: dir,
      HOME: work,
      TMPDIR: work,
      ...(process.env.FIZZ_DOTNET_TRACE ? { FIZZ_DOTNET_TRACE: "1" } : {}),
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  proc.stderr.on("data", (d) => (log += d));
  // Warm as in a pool: listening, and its rehearsal done.
  while (!log.includes("rehearsal done")) await new Promise((r) => setTimeout(r, 5));
  starts.push(performance.now() - t0);
  const s0 = performance.now();
  const spec = await call(
    port,
    "POST",
    "/v2/specialize",
    { "content-type": "application/vnd.fizz.specialize+tar", "content-length": body.length },
    body,
  );
  const s1 = performance.now();
  const answer = await call(port, "GET", "/", { "x-fizz-instance": "x" });
  const ms = performance.now() - s0;
  specs.push(s1 - s0);
  if (spec.status !== 200 || answer.text !== "Hello, world!\n")
    throw new Error(`run ${i}: ${spec.text} ${answer.text}`);
  times.push(ms);
  if (process.env.FIZZ_DOTNET_TRACE) {
    await new Promise((r) => setTimeout(r, 50));
    console.error(`run ${i}: ${ms.toFixed(1)}ms\n${log.split("rehearsal done")[1]}`);
  }
  proc.kill("SIGKILL");
}
rmSync(work, { recursive: true, force: true });
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)].toFixed(1);
};
console.log(
  JSON.stringify({
    runs,
    monoOptions,
    specializeToFirstAnswerMs: { p50: Number(pct(times, 50)), p99: Number(pct(times, 99)) },
    specializeMs: { p50: Number(pct(specs, 50)), p99: Number(pct(specs, 99)) },
    startToWarmMs: { p50: Number(pct(starts, 50)), p99: Number(pct(starts, 99)) },
  }),
);
