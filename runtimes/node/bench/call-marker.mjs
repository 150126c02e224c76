#!/usr/bin/env node
// @ts-check
/**
 * Micro-benchmark of the call marker (src/call-marker.mjs) on the warm path, in process, without
 * HTTP (whose noise hides costs this small):
 *
 *   node runtimes/node/bench/call-marker.mjs [rounds]
 *
 * - `silent call`: a call that prints nothing, an async function with three awaits, run bare,
 *   as a call before anything was printed during a call (no async context tracked), and as a call
 *   once something was (an AsyncLocalStorage.run per call). Each variant runs in a fresh child
 *   process: once an AsyncLocalStorage is in use, Node 20 tracks context through every promise of
 *   the process, so the other figures must come from processes that never used one.
 * - `console.log`: one line to a stream that discards it, unmarked and marked (same call, so no
 *   marker after the first; and alternating calls, a marker every line).
 * Figures are ns of CPU time per call (other processes on a busy machine do not count), median of
 * the rounds. Not a test: it asserts nothing and is run by hand. Over HTTP, the instance's CPU
 * time per call of a hello function on a busy 2-CPU machine (keep-alive, sequential calls) was
 * 44-48 µs before markers and after (untracked: within the noise), and about 6 µs more with
 * tracking on (an AsyncLocalStorage in use: Node 20 runs its hook for every async resource).
 */
import { spawnSync } from "node:child_process";
import { Writable } from "node:stream";
import { Console } from "node:console";
import { fileURLToPath } from "node:url";
import { closeCall, inCall, markCalls, openCall } from "../src/call-marker.mjs";

const ROUNDS = Number(process.argv[2] ?? 15);
const CALLS = 200_000;
const LINES = 200_000;

/** @param {number[]} xs */
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/**
 * @param {() => Promise<void>} round
 * @param {number} count
 * @returns {Promise<number>} CPU ns per call
 */
async function timed(round, count) {
  const t0 = process.cpuUsage();
  await round();
  const { user, system } = process.cpuUsage(t0);
  return ((user + system) * 1000) / count;
}

const handler = async () => {
  await null;
  await null;
  await null;
  return "quiet";
};

/**
 * A call as src/invoke.mjs runs one.
 * @template T
 * @param {string} id
 * @param {() => Promise<T>} fn
 */
async function call(id, fn) {
  const c = openCall(id);
  try {
    return await inCall(c, fn);
  } finally {
    closeCall(c);
  }
}

/** In a child: one variant of the silent call; prints the median. */
async function child(/** @type {string} */ variant) {
  if (variant === "tracked") {
    // One line written during a call turns tracking on for the calls after it.
    const sink = new Writable({ write: (_c, _e, done) => done() });
    markCalls(/** @type {NodeJS.WriteStream} */ (/** @type {unknown} */ (sink)));
    await call("req-0", async () => void sink.write("a line\n"));
  }
  const run = variant === "bare" ? handler : () => call("req-1", handler);
  /** @type {number[]} */
  const samples = [];
  for (let r = 0; r < ROUNDS; r++) {
    samples.push(
      await timed(async () => {
        for (let i = 0; i < CALLS; i++) await run();
      }, CALLS),
    );
  }
  process.stdout.write(`${median(samples)}\n`);
}

async function lines() {
  const sink = () =>
    /** @type {NodeJS.WriteStream} */ (
      /** @type {unknown} */ (new Writable({ write: (_c, _e, done) => done() }))
    );
  const plain = sink();
  const marked = sink();
  markCalls(marked);
  const consoles = { plain: new Console(plain), marked: new Console(marked) };
  /** @type {Record<string, () => Promise<void>>} */
  const cases = {
    "console.log, unmarked": async () => {
      for (let i = 0; i < LINES; i++) consoles.plain.log("a line from the function");
    },
    "console.log, marked, same call": () =>
      call("req-1", async () => {
        for (let i = 0; i < LINES; i++) consoles.marked.log("a line from the function");
      }),
    "console.log, marked, calls alternate": async () => {
      await Promise.all(
        ["req-1", "req-2"].map((id) =>
          call(id, async () => {
            for (let i = 0; i < LINES / 2; i++) {
              consoles.marked.log("a line from the function");
              await null; // hand over to the other call: every line gets a marker
            }
          }),
        ),
      );
    },
  };
  for (const [name, round] of Object.entries(cases)) {
    /** @type {number[]} */
    const samples = [];
    for (let r = 0; r < ROUNDS; r++) samples.push(await timed(round, LINES));
    console.log(`${name.padEnd(40)}${median(samples).toFixed(0).padStart(8)}`);
  }
}

if (process.env.CALL_MARKER_BENCH_CHILD) {
  await child(process.env.CALL_MARKER_BENCH_CHILD);
} else {
  console.log(`call marker, CPU ns per call (median of ${ROUNDS} rounds)`);
  const self = fileURLToPath(import.meta.url);
  for (const variant of ["bare", "untracked", "tracked"]) {
    const run = spawnSync(process.execPath, [self, String(ROUNDS)], {
      env: { ...process.env, CALL_MARKER_BENCH_CHILD: variant },
      encoding: "utf8",
    });
    if (run.status !== 0) throw new Error(run.stderr);
    const ns = Number(run.stdout.trim());
    console.log(`${`silent call, ${variant}`.padEnd(40)}${ns.toFixed(0).padStart(8)}`);
  }
  await lines();
}
