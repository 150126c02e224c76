#!/usr/bin/env node
// @ts-check
/**
 * Fizz environment loader for Node.js functions; the contract is docs/runtime-contract.md.
 *
 * The process starts generic ("warm"), is specialized exactly once with one function revision, and
 * from then on serves only that function. It is also the cold-start path when the pool is empty, so
 * it has no dependencies and imports only Node built-ins and its own small modules.
 *
 * Trust: POST /v2/specialize needs the token the poolkeeper gave this process at start
 * (FIZZ_SPECIALIZE_TOKEN, removed from the environment before any user code runs), so another
 * function that finds this port cannot load its own code here; and the code must hash to the
 * digest it came with. Once specialized, a second specialize is refused, so the function cannot
 * be swapped underneath its traffic. Invocations are not authenticated: the port must only be
 * reachable from the platform (loopback and per-uid isolation, or a NetworkPolicy).
 */
// First: a pool instance's warm-up is to make Node's request handling under it (the module says why).
import { endEagerFeedback } from "./src/eager-feedback.mjs";
import { busyStartRatio, warmUpWanted } from "./src/warm-up-mode.mjs";
import { createServer } from "node:http";
import { lifecycle, readinessPipe } from "./src/lifecycle.mjs";
import { createListener, loadHandlers } from "./src/listener.mjs";

// Only node:http, the listener with the probe's helpers and the lifecycle load before listen: on an
// empty pool the request waits for this process to answer /healthz. Specialize and invoke load
// right after listen (warmUp, loadHandlers).

/** @typedef {import("node:http").ServerResponse} Res */
/** @typedef {import("./src/specialize.mjs").Instance} Instance */
/** @typedef {import("./src/specialize.mjs").Config} Config */

/**
 * @param {string} name
 * @param {number} fallback
 */
function intFromEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) {
    console.error(`[fizz] ${name}=${raw} is not a valid non-negative integer`);
    process.exit(2);
  }
  return value;
}

/**
 * Without node:path, which is not loaded before listen: a relative directory is taken from the
 * directory the runtime started in.
 * @param {string | undefined} dir
 */
function absolute(dir) {
  if (!dir) return undefined;
  return dir.startsWith("/") ? dir : `${process.cwd()}/${dir}`;
}

const port = intFromEnv("PORT", 8888);
const host = process.env.HOST || "0.0.0.0";
// Read once and dropped: the function's code (and anything it starts) must never see it.
const specializeToken = process.env.FIZZ_SPECIALIZE_TOKEN || undefined;
delete process.env.FIZZ_SPECIALIZE_TOKEN;
// The process backend's readiness pipe (src/lifecycle.mjs): announced on listen, or after a pool
// instance's warm-up, and closed before any user code loads.
const readiness = readinessPipe(
  process.env.FIZZ_READY_FD ? intFromEnv("FIZZ_READY_FD", 0) : undefined,
);
delete process.env.FIZZ_READY_FD;
// "0": started for a specialize that is already waiting (an empty pool): no rehearsal; a refill
// started on a busy machine has none either (src/warm-up-mode.mjs).
delete process.env.FIZZ_WARM_UP;
/**
 * stderr keeps an "error" listener for good: once its reader is gone (the process backend's pipe
 * after the poolkeeper died, while the instance drains its calls) a failed write emits "error",
 * which without a listener is thrown as an uncaught exception. The line is lost; the instance goes
 * on. (The call markers add the same guard to stdout and stderr when invoke.mjs loads.)
 */
process.stderr.on("error", () => {});

/**
 * The runtime's own log. A line of text is written to stderr as it is, not through console.error,
 * whose formatting and per-write "error" listener cost a pool instance ~0.1 ms of CPU on its
 * "specialized" line, the one written between the specialize's answer and the first call. Anything
 * else (a message with an error to print) goes through console.error.
 * @param {...unknown} args
 */
function log(...args) {
  if (args.length !== 1 || typeof args[0] !== "string") return console.error(...args);
  try {
    process.stderr.write(`${args[0]}\n`);
  } catch {
    // Written synchronously (stderr is a file) and failed: as above, the line is lost.
  }
}

/** @type {Config} */
const config = {
  instanceId: process.env.FIZZ_INSTANCE_ID || undefined,
  specializeToken,
  workdir: process.env.FIZZ_WORKDIR || undefined,
  secretsDir: absolute(process.env.FIZZ_SECRETS_DIR),
  configsDir: absolute(process.env.FIZZ_CONFIGS_DIR),
  maxBodyBytes: intFromEnv("FIZZ_MAX_BODY_BYTES", 64 * 1024 * 1024),
  // As Fission's BODY_PARSER_LIMIT; request.mjs's FORM_MAX_BYTES (not imported before listen).
  formMaxBytes: intFromEnv("FIZZ_FORM_MAX_BYTES", 1024 * 1024),
  maxPackageBytes: intFromEnv("FIZZ_MAX_PACKAGE_BYTES", 2 * 1024 * 1024 * 1024),
  maxPackageEntries: intFromEnv("FIZZ_MAX_PACKAGE_ENTRIES", 100_000),
  log,
};
/** Kubernetes' default terminationGracePeriodSeconds is 30: finish well inside it. */
const SHUTDOWN_GRACE_MS = 25_000;

/** @type {Instance} */
const instance = { state: "warm", active: undefined, draining: false };
/** Responses not yet over; on shutdown the ones with unsent headers get `Connection: close`. */
/** @type {Set<Res>} */
const unfinished = new Set();

/** A specialize request has come in (maybe still reading its body): the rehearsal stops. */
let specializeArrived = false;

/** Options shared by the instance's server and the rehearsal's. */
const SERVER_OPTIONS = { noDelay: true, keepAlive: true };
const server = createServer(SERVER_OPTIONS);
const life = lifecycle({
  instance,
  server,
  unfinished,
  graceMs: SHUTDOWN_GRACE_MS,
  watchStdin: process.env.FIZZ_PARENT_STDIN === "1",
});
server.on(
  "request",
  createListener(instance, config, unfinished, {
    onSpecialize: () => {
      specializeArrived = true;
      // Taken during its warm-up: the function loads under V8's defaults, as once it is over.
      endEagerFeedback();
      // Handed out before announcing (the poolkeeper polled after its grace period): the pipe is
      // closed before user code loads, unwritten, since nobody reads it any more.
      readiness.close();
    },
    // The first call answered, the cold path is over: time to watch the parent (watchParent).
    afterCall: () => setImmediate(life.watchParent),
    afterResponse: life.afterResponse,
  }),
);
// Longer than any reasonable client idle timeout, so the gateway's pooled connection is never
// closed here at the moment it sends a request on it.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

// A promise the function forgot to await must not take down the calls running next to it.
process.on("unhandledRejection", (reason) => {
  console.error("[fizz] unhandled promise rejection in the function:", reason);
});

process.on("SIGTERM", () => life.shutdown("SIGTERM", true));
process.on("SIGINT", () => life.shutdown("SIGINT", true));

/** How long an instance started for a waiting specialize waits at most to watch its stdin. */
const PARENT_WATCH_LATEST_MS = 1000;

server.on("error", (err) => {
  console.error(`[fizz] cannot listen on ${host}:${port}: ${err.message}`);
  process.exit(1);
});
server.listen(port, host, () => {
  const as = config.instanceId ? ` as ${config.instanceId}` : "";
  const busy =
    busyStartRatio === undefined
      ? ""
      : `; warm-up skipped: started busy (wall ${busyStartRatio.toFixed(1)}x CPU)`;
  console.error(`[fizz] node runtime listening on ${host}:${port}${as}${busy}`);
  // After the line above is in the stderr pipe (writes to pipes are synchronous): the poolkeeper
  // reads it as the warm instance's before it can hand the instance to a function. A pool
  // instance announces only after its warm-up (warmUp): the rehearsal's CPU then runs while the
  // poolkeeper keeps it at a low priority and before any request can be given to it, instead of
  // next to the specialize that takes it.
  if (!warmUpWanted) readiness.announce();
  // A pool instance watches its parent now; one started for a waiting specialize once its first
  // call has been answered (PARENT_WATCH_LATEST_MS at the latest): opening stdin is ~1-2 ms of
  // CPU that would come before the handlers' load, or the first call, on the request's path.
  if (warmUpWanted) life.watchParent();
  else setTimeout(life.watchParent, PARENT_WATCH_LATEST_MS);
  setImmediate(warmUp);
});

/** The end of a pool instance's warm-up: announced unless a specialize came in first. */
function warmedUp() {
  readiness.announce();
}

/**
 * Still generic after the rehearsal: load the archive form's modules (node-tar takes tens of
 * milliseconds to load), so a package's specialize does not wait for them. Skipped once the real
 * specialize has come in: a single file never needs them.
 */
function preloadArchiveSupport() {
  if (specializeArrived || instance.draining) return undefined;
  return import("./src/specialize-archive.mjs").catch((err) =>
    console.error(`[fizz] archive support not preloaded: ${err?.message ?? err}`),
  );
}

/**
 * While the instance is generic: load the request-handling modules, then rehearse a specialize
 * and a call on a private throwaway instance, so that the first real ones pay neither for
 * compiling this code nor for Node's lazily loaded internals (src/rehearse.mjs). The rehearsal is
 * an optimization only: a failure is logged and otherwise ignored, and it stops early once the
 * real specialize has come in. Modules that do not load are a broken install: exit, as a static
 * import would have. An instance started for a waiting specialize (FIZZ_WARM_UP=0), or a refill
 * started on a busy machine (src/warm-up-mode.mjs), only loads them: the real specialize and call
 * come at once (a busy machine's refill is handed out as soon as it is up) and pay the same price
 * a rehearsal would. A pool instance that warms up announces readiness at the end (warmedUp), so
 * it is idle once handed out.
 */
function warmUp() {
  loadHandlers().then(
    () => {
      if (!warmUpWanted) return undefined;
      return import("./src/rehearse.mjs")
        .then(({ rehearse }) =>
          rehearse({
            createServer: (rehearsalInstance, rehearsalConfig) =>
              createServer(
                SERVER_OPTIONS,
                createListener(rehearsalInstance, rehearsalConfig, new Set()),
              ),
            shouldStop: () => specializeArrived || instance.draining,
            workdir: config.workdir,
          }),
        )
        .catch((err) => console.error(`[fizz] warm-up rehearsal skipped: ${err?.message ?? err}`))
        .then(endEagerFeedback)
        .then(preloadArchiveSupport)
        .then(warmedUp);
    },
    (err) => {
      console.error("[fizz] cannot load the runtime's modules:", err);
      process.exit(1);
    },
  );
}
