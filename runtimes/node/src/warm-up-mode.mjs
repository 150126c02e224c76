// @ts-check
/**
 * Whether this instance warms up before it announces readiness: eager feedback
 * (eager-feedback.mjs), the rehearsal (rehearse.mjs) and the archive preload (server.mjs). They
 * cost a pool instance ~110 ms of CPU (more than Node's own start-up, ~65 ms) to take a few ms
 * off its specialize and first call. That is a good trade while the machine has CPU to spare, and
 * a bad one while it has none: on 2 cores saturated by a burst of cold starts (the scale bench's
 * 50 distinct functions, 8 at a time, on a pool of 4), every refill is handed out as soon as it
 * is ready, each ms of CPU its warm-up spends is taken from the requests and the other starts, and
 * the start rate (~9-10 Node starts a second) was what the burst waited for.
 *
 * FIZZ_WARM_UP: "0" never (started for a specialize already waiting), "1" always (tests, or to
 * rule it in), unset (a pool instance): always, except for a process backend refill (decideWarmUp)
 * started while the machine was busy, i.e. its wall time since Node started (process.uptime(),
 * from Node's own start, after exec and dynamic linking, whose CPU getrusage counts: the ratio
 * errs towards warming up) was more than BUSY_RATIO times the CPU time it got. Measured on 2
 * cores (load 6-16 from other work): a start given a core to itself 0.8-1.0 (Node's start-up
 * runs on more than one thread); one sharing the cores fairly with many others 1.6-2.4; a refill
 * at its start-up niceness (instance-launch.ts, REFILL_NICE) mostly 4-23 (13 of 16 over 3). 3,
 * not 2: a refill that only met a short burst of other work (a function being created while a
 * sequential cold-start bench's refill starts) keeps its warm-up. Measured, 10 alternating pairs
 * of a refill started niced on the busy machine (load 8): CPU to ready 200 -> 115 ms (median
 * ratio 0.647), wall 730 -> 523 ms (0.866), for 5.3 -> 13.3 ms of CPU in its specialize and first
 * call, warm calls unchanged (CPU per call 1.004x over 2,000); given a core, CPU to ready 1.012x
 * (warmed up as before). The check is one getrusage.
 */

/** Wall time over CPU time from which the machine counts as busy (see above). */
export const BUSY_RATIO = 3;

/**
 * @param {number} wallMs since the process started
 * @param {number} cpuMs CPU time of all its threads so far
 */
export function busy(wallMs, cpuMs) {
  return wallMs > BUSY_RATIO * cpuMs;
}

/**
 * Wall time over CPU time at the start, when the rule was applied and skipped the warm-up: the
 * runtime says so on its "listening" line, so that a slower first call can be told apart.
 * @type {number | undefined}
 */
export let busyStartRatio;

function startedBusy() {
  const { user, system } = process.cpuUsage();
  const wallMs = process.uptime() * 1000;
  const cpuMs = (user + system) / 1000;
  if (!busy(wallMs, cpuMs)) return false;
  busyStartRatio = cpuMs > 0 ? wallMs / cpuMs : Infinity;
  return true;
}

/**
 * Whether the rule applies: FIZZ_WARM_UP unset, and started by the process backend, the only one
 * that passes a readiness pipe (FIZZ_READY_FD): its refill is the one niced until ready and then
 * handed out at once, on the cores the requests run on. A kubernetes pod (no pipe) warms up as
 * before: its start is slow by its own CPU limit as much as by a busy node (CFS throttling: at a
 * 100m limit wall measured ~6-7x CPU at this point, at 200m ~3), its warm-up spends its own
 * quota, and it is found by its readiness probe on listen, warm-up or not.
 * @param {string | undefined} setting FIZZ_WARM_UP
 * @param {string | undefined} readyFd FIZZ_READY_FD
 * @param {() => boolean} startedBusy
 */
export function decideWarmUp(setting, readyFd, startedBusy) {
  if (setting === "1") return true;
  if (setting === "0") return false;
  return !readyFd || !startedBusy();
}

/** Decided once, at the start (the first module server.mjs loads imports this one first). */
export const warmUpWanted = decideWarmUp(
  process.env.FIZZ_WARM_UP,
  process.env.FIZZ_READY_FD,
  startedBusy,
);
