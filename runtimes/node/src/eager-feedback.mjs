// @ts-check
/**
 * A pool instance's warm-up runs with V8's feedback vectors made at a function's first call
 * instead of after some use (V8's lazy feedback allocation). The rehearsal's one specialize and
 * one call (rehearse.mjs) then leave the code they ran, Node's request handling above all (http,
 * net, streams), with its inline caches filled in, where the real specialize and first call
 * otherwise ran it without any. Imported by server.mjs before anything else, so that node:http
 * and the modules it loads are made under it in the one-file build (from the sources node:http
 * is loaded before any module runs: less is gained there). Switched back once the rehearsal is
 * over (endEagerFeedback): the archive support preloaded next and the function's own code run
 * under V8's defaults, and V8 takes Node's code cache of its built-ins again (a cache is only
 * taken under the flags it was made with).
 *
 * Only for a pool instance that warms up (warm-up-mode.mjs): one started for a waiting specialize
 * (FIZZ_WARM_UP=0), or a refill started on a busy machine, rehearses nothing, and loads no node:v8
 * (~1.5 ms). The V8 code cache of the one-file build is read and checked before this runs
 * (start-cached.cjs), under the flags it was made with. Measured on a pool instance (20
 * alternating runs, 2 cores, load ~2): CPU of its specialize + first call 3.21 -> 2.76 ms, wall
 * 4.49 -> 3.68 ms, for 10-20 ms more CPU in its warm-up, spent before it announces readiness.
 */
import { createRequire } from "node:module";
import { warmUpWanted } from "./warm-up-mode.mjs";

/** @type {((flags: string) => void) | undefined} */
let setFlags;
if (warmUpWanted) {
  // Any absolute path: only a built-in is required through it.
  /** @type {typeof import("node:v8")} */
  const v8 = createRequire(process.execPath)("node:v8");
  setFlags = v8.setFlagsFromString;
  setFlags("--no-lazy-feedback-allocation");
}

/** V8's default again; once (later calls do nothing). */
export function endEagerFeedback() {
  setFlags?.("--lazy-feedback-allocation");
  setFlags = undefined;
}
