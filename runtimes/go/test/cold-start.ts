// Measures the Go runtime's cold specialization directly against fresh warm instances: from the
// specialize request (archive form, hello compiled by build.sh) until the first call's answer.
// Usage: npx tsx runtimes/go/test/cold-start.ts [runs=20]
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { gunzipSync, gzipSync } from "node:zlib";
import { packageArchive } from "../../contract/archive.js";
import { ARCHIVE_CONTENT_TYPE, request } from "../../contract/harness.js";
import { ME } from "../../contract/runtime-contract.js";
import { prepare } from "../prepare.mjs";
import { HELLO, build, compile, goRuntime } from "./fixtures.js";

const runs = Number(process.argv[2] ?? 20);
await prepare({ log: () => undefined });

/** CPU time (user + system, ms) the process has used so far: wall time is noise on a loaded
 * machine, CPU time is what a quiet one would spend. The counters survive the exec. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime in 1/100 s
}

const pct = (list: number[], p: number) => {
  const sorted = [...list].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};
const fmt = (n: number) => n.toFixed(1);

async function measure(archive: Buffer) {
  // The body is made once, before the clock starts: the poolkeeper knows the digest (ArchiveRef)
  // and streams the archive as it is; hashing and copying 6 MB here (~25 ms, most of it touching
  // fresh memory) was the tool's time, not the instance's.
  const digest = `sha256:${createHash("sha256").update(archive).digest("hex")}`;
  const line = JSON.stringify({
    function: { namespace: "default", name: "hello", revision: 3 },
    digest,
  });
  const body = Buffer.concat([Buffer.from(`${line}\n`), archive]);
  let cpu = 0;
  const times: number[] = [];
  const loads: number[] = [];
  for (let i = 0; i < runs; i++) {
    const rt = await goRuntime.start();
    try {
      const pid = rt.proc.pid ?? 0;
      const cpuBefore = cpuMs(pid);
      const started = performance.now();
      const res = await request(rt.url, {
        method: "POST",
        path: "/v2/specialize",
        headers: { "content-type": ARCHIVE_CONTENT_TYPE, "content-length": String(body.length) },
        body,
      });
      const answer = await request(rt.url, { headers: ME });
      times.push(performance.now() - started);
      cpu += cpuMs(pid) - cpuBefore;
      if (res.status !== 200 || answer.text !== "Hello, world!\n") throw new Error(res.text);
      loads.push(Number(res.object().loadMs));
    } finally {
      await rt.kill();
    }
  }
  return { times, loads, cpu };
}

// A build with the seed: a hello of its own (so its main package is in no cache).
const fresh = { "hello.go": HELLO.source.replace("Hello", `Hello ${Date.now()}`) };
const buildStarted = performance.now();
const built = await build(fresh, { cache: false });
if (!built.ok) throw new Error(built.log);
console.log(`build of a new hello with the seed: ${fmt(performance.now() - buildStarted)} ms`);

const level6 = await packageArchive(await compile({ "hello.go": HELLO.source }));
// The same tar stored uncompressed (gzip level 0): inflating the binary is most of the cost.
const level0 = gzipSync(gunzipSync(level6), { level: 0 });
for (const [label, archive] of [
  ["gzip level 6 (the packer's default)", level6],
  ["gzip level 0 (stored)", level0],
] as const) {
  const { times, loads, cpu } = await measure(archive);
  console.log(`${label}: archive ${(archive.length / 1024).toFixed(0)} KiB`);
  console.log(
    `  specialize-to-first-answer, ${runs} runs: p50 ${fmt(pct(times, 50))} ms, p99 ${fmt(pct(times, 99))} ms, min ${fmt(Math.min(...times))} ms`,
  );
  console.log(`  instance CPU per specialize + first call: ${fmt(cpu / runs)} ms (mean)`);
  console.log(`  loadMs (exec handoff until the function answers): p50 ${fmt(pct(loads, 50))} ms`);
}
