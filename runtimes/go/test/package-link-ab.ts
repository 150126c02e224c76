// A/B of how a Go instance of the process backend (own uid, as root) gets its cached package:
// "archive", a link to the cached tar.gz it extracts and hashes (ArchiveCache.linkInto), against
// "package", links to the files the poolkeeper extracted once (linkPackageInto), alternating per
// sample against fresh instances. Per sample: the poolkeeper's link step, the specialize POST,
// the first call (wall, ms), the runtime's loadMs, and the instance's CPU (10 ms ticks).
// Usage (root): npx tsx runtimes/go/test/package-link-ab.ts [pairs=20] [--stored]
// --stored: the tar stored uncompressed (gzip level 0), as the builder stores Go deployments.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import { silentLogger } from "@fizz/kit";
import { Agent, request } from "undici";
import { instanceAgent } from "../../../services/poolkeeper/src/instance-http";
import { ArchiveCache } from "../../../services/poolkeeper/src/archive-cache.js";
import { DEFAULT_RUNTIMES_DIR, loadConfig } from "../../../services/poolkeeper/src/config.js";
import { ProcessBackend } from "../../../services/poolkeeper/src/process-backend.js";
import { postSpecialize } from "../../../services/poolkeeper/src/runtime-client.js";
import { env } from "../../../services/poolkeeper/test/fake-backend.js";
import { packageArchive } from "../../contract/archive.js";
import { HELLO, compile, ensurePrepared } from "./fixtures.js";

/** The backend's client for its instances; the test's own requests go over undici. */
const instancesAgent = instanceAgent();

const pairs = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 20);
await ensurePrepared();
const level6 = await packageArchive(await compile({ [HELLO.filename]: HELLO.source }));
const archive = process.argv.includes("--stored")
  ? gzipSync(gunzipSync(level6), { level: 0 })
  : level6;
const digest = `sha256:${createHash("sha256").update(archive).digest("hex")}`;
const workDir = await mkdtemp(path.join(tmpdir(), "fizz-go-ab-"));
const agent = new Agent();
const config = loadConfig({ FIZZ_WORKDIR: workDir });
const backend = new ProcessBackend({
  workDir,
  runtimesDir: DEFAULT_RUNTIMES_DIR,
  python: config.python,
  interpreters: config.interpreters,
  spawnTimeoutMs: 20_000,
  killGraceMs: 2000,
  baseEnv: config.instanceEnv,
  isolation: config.isolation,
  allowEnvCommand: false,
  agent: instancesAgent,
  logger: silentLogger(),
});
const cache = new ArchiveCache(
  {
    has: (d) => Promise.resolve(d === digest),
    getBuffer: () => Promise.resolve(null),
    get: (d) => Promise.resolve(d === digest ? Readable.from([archive]) : null),
  },
  { dir: path.join(workDir, "archive-cache"), maxBytes: 1 << 30, maxEntryBytes: 1 << 28 },
);

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

type Mode = "archive" | "package";
const results: Record<Mode, { link: number[]; total: number[]; load: number[]; cpu: number[] }> = {
  archive: { link: [], total: [], load: [], cpu: [] },
  package: { link: [], total: [], load: [], cpu: [] },
};
const e = env("go", { image: "fizz/env-go" });
const why = backend.unsupported(e);
if (why) throw new Error(why);

async function sample(mode: Mode): Promise<void> {
  const inst = await backend.spawn(e, { taken: true });
  try {
    const pid = inst.pid ?? 0;
    const cpuBefore = pid ? cpuMs(pid) : 0;
    const started = performance.now();
    const name =
      mode === "archive"
        ? await cache.linkInto(digest, inst.dir!)
        : await cache.linkPackageInto(digest, inst.dir!);
    const linked = performance.now();
    if (!name) throw new Error(`${mode}: not linked`);
    const outcome = await postSpecialize(
      instancesAgent,
      inst.address,
      {
        meta: {
          instanceId: inst.id,
          function: { namespace: "default", name: "hello", revision: 1 },
          concurrency: 1,
          digest,
          archiveFile: name,
        },
        archive: Readable.from([]),
        size: 0,
      },
      inst.specializeToken,
      20_000,
    );
    if (outcome.kind !== "ok") throw new Error(`${mode}: ${JSON.stringify(outcome)}`);
    const res = await request(inst.address, {
      dispatcher: agent,
      headers: { "x-fizz-instance": inst.id },
    });
    const text = await res.body.text();
    const done = performance.now();
    if (text !== "Hello, world!\n") throw new Error(`${mode}: ${text}`);
    const r = results[mode];
    r.link.push(linked - started);
    r.total.push(done - started);
    r.load.push(Number((outcome as { loadMs?: number }).loadMs ?? NaN));
    if (pid) r.cpu.push(cpuMs(pid) - cpuBefore);
  } finally {
    await backend.kill(inst.id, "sample done");
  }
}

try {
  // Each path once first (the download, the one extraction), outside the figures.
  if (!(await cache.extractOnce(digest))) throw new Error("the package is not a tree");
  await sample("archive");
  await sample("package");
  for (const m of ["archive", "package"] as const)
    for (const k of Object.values(results[m])) k.length = 0;
  for (let i = 0; i < pairs; i++) {
    const order: Mode[] = i % 2 === 0 ? ["archive", "package"] : ["package", "archive"];
    for (const m of order) await sample(m);
  }
  const median = (l: number[]) => {
    const s = [...l].filter((n) => !Number.isNaN(n)).sort((a, b) => a - b);
    return s.length
      ? (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2
      : NaN;
  };
  for (const m of ["archive", "package"] as const) {
    const r = results[m];
    console.log(
      `${m}: n=${r.total.length} link p50 ${median(r.link).toFixed(2)} ms, link-to-first-answer p50 ${median(r.total).toFixed(1)} ms, loadMs p50 ${median(r.load).toFixed(1)}, instance CPU median ${median(r.cpu)} ms (mean ${(r.cpu.reduce((a, b) => a + b, 0) / Math.max(1, r.cpu.length)).toFixed(1)})`,
    );
  }
} finally {
  await backend.close();
  await agent.close();
  await rm(workDir, { recursive: true, force: true });
}
