// A/B of instance starts: child_process.spawn of the setpriv command line (as the process backend
// does, with and without the prlimit in front) against the spawner, from a Node process with ~60+
// MB RSS (the poolkeeper's size), interleaved. As root:
//   node --import tsx services/poolkeeper/spawner/bench-spawn.mjs [samples=30] [echo|node|burst4|both]
// Per sample: `block` = the synchronous spawn() call (the event loop is stuck in it: libuv forks
// and waits for the exec), `elu` = event-loop busy time from the call until the child's first byte
// (echo) or readiness line (node), `wall` = that wait.
import { spawn } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { startSpawner } from "../src/spawner-client.ts";

const samples = Number(process.argv[2] ?? 30);
const which = process.argv[3] ?? "both";
const UID = 295_000;
const NPROC = 256;
const here = path.dirname(fileURLToPath(import.meta.url));
const nodeEntry = path.resolve(here, "../../../runtimes/node/start-cached.cjs");

// Ballast: the poolkeeper's heap is ~60-90 MB; fork copies its page tables.
const ballast = [];
for (let i = 0; i < 40_000; i++) ballast.push({ i, s: `item-${i}`, a: [i, i + 1] });

const work = mkdtempSync(path.join(tmpdir(), "fizz-spawn-bench-"));
chmodSync(work, 0o711);
const spawner = await startSpawner({ python: "/usr/bin/python3", dir: path.join(work, "sock") });
const base = { PATH: "/usr/local/bin:/usr/bin:/bin", LANG: "C.UTF-8" };

function setprivArgv(cmd, prlimit) {
  const run = [
    "/usr/bin/setpriv",
    `--reuid=${UID}`,
    `--regid=${UID}`,
    "--clear-groups",
    "--inh-caps=-all",
    "--no-new-privs",
    "--pdeathsig=SIGKILL",
    "--",
    ...cmd,
  ];
  return prlimit ? ["/usr/bin/prlimit", `--nproc=${NPROC}:${NPROC}`, "--", ...run] : run;
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let n = 0;
async function instance(kind) {
  const dir = path.join(work, `i${n++}`);
  mkdirSync(dir, { mode: 0o700 });
  chownSync(dir, UID, UID);
  const env = { ...base, HOME: dir, TMPDIR: dir };
  if (kind === "node")
    Object.assign(env, {
      PORT: String(await freePort()),
      HOST: "127.0.0.1",
      FIZZ_INSTANCE_ID: `b${n}`,
      FIZZ_WORKDIR: dir,
      FIZZ_PARENT_STDIN: "1",
      FIZZ_SPECIALIZE_TOKEN: "x".repeat(43),
      FIZZ_READY_FD: "3",
      FIZZ_WARM_UP: "0",
    });
  const cmd = kind === "node" ? [process.execPath, nodeEntry] : ["/bin/echo", "x"];
  return { dir, env, cmd };
}

async function one(mode, kind) {
  if (process.env.BENCH_DEBUG) console.error("start", mode, kind);
  const { dir, env, cmd } = await instance(kind);
  const stdio = kind === "node" ? ["pipe", "pipe", "pipe", "pipe"] : ["pipe", "pipe", "pipe"];
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  let proc;
  let block;
  if (mode === "spawner") {
    const p = spawner.spawn({
      file: cmd[0],
      args: cmd.slice(1),
      cwd: dir,
      env,
      uid: UID,
      nproc: NPROC,
      stdio,
    });
    block = performance.now() - t0;
    proc = await p;
    if (proc.pid === undefined) throw new Error("spawn failed");
  } else {
    const [file, ...args] = setprivArgv(cmd, mode === "prlimit+setpriv");
    proc = spawn(file, args, { cwd: dir, env, stdio, detached: true });
    block = performance.now() - t0;
  }
  const watched = kind === "node" ? proc.stdio[3] : proc.stdout;
  await new Promise((resolve, reject) => {
    watched.once("data", resolve);
    // Its exit may come before its output (two channels); only a failure ends the wait.
    proc.once("exit", (c, s) => c !== 0 && reject(new Error(`exited ${c} ${s}`)));
  });
  const wall = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0).active;
  const exited = new Promise((r) =>
    proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once("close", r),
  );
  for (const s of proc.stdio) s?.resume?.();
  if (kind === "node") {
    try {
      process.kill(-proc.pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  await exited;
  rmSync(dir, { recursive: true, force: true });
  return { block, elu, wall };
}

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return `p50 ${q(0.5).toFixed(2)} p90 ${q(0.9).toFixed(2)} (n=${s.length})`;
}

const modes = ["setpriv", "prlimit+setpriv", "spawner"];
const kinds = which === "both" ? ["echo", "node"] : [which];
console.log(`rss ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB, ballast ${ballast.length}`);
for (const kind of kinds) {
  const res = Object.fromEntries(modes.map((m) => [m, { block: [], elu: [], wall: [] }]));
  for (const m of modes) await one(m, kind === "burst4" ? "node" : kind); // warm-up, not counted
  for (let i = 0; i < samples; i++) {
    // Interleaved, the order rotating, so load drifts hit every mode alike.
    for (let j = 0; j < modes.length; j++) {
      const m = modes[(i + j) % modes.length];
      const r =
        kind === "burst4"
          ? // Four node instances at once (a pool filling): the time until the last is ready.
            await Promise.all([0, 1, 2, 3].map(() => one(m, "node"))).then((rs) => ({
              block: rs.reduce((a, x) => a + x.block, 0),
              elu: Math.max(...rs.map((x) => x.elu)),
              wall: Math.max(...rs.map((x) => x.wall)),
            }))
          : await one(m, kind);
      for (const k of ["block", "elu", "wall"]) res[m][k].push(r[k]);
    }
  }
  for (const m of modes)
    for (const k of ["block", "elu", "wall"])
      console.log(`${kind} ${m.padEnd(16)} ${k.padEnd(5)} ${stats(res[m][k])} ms`);
}
await spawner.close();
rmSync(work, { recursive: true, force: true });
