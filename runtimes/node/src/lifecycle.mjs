// @ts-check
/**
 * How an instance tells it is up (the readiness pipe), and how it ends: on a signal, or when the
 * process backend's parent goes away. Loaded before listen (server.mjs imports it statically): it
 * imports only node:fs, which the runtime's start has loaded anyway.
 */
import { closeSync, writeSync } from "node:fs";

/** @typedef {import("node:http").Server} Server */
/** @typedef {import("node:http").ServerResponse} Res */
/** @typedef {import("./specialize.mjs").Instance} Instance */

/**
 * The process backend's readiness pipe (docs/runtime-contract.md): "ready" written once, then
 * closed, so neither the function nor anything it starts inherits it. Without a descriptor
 * (`fd` undefined: Kubernetes, a plain start) both do nothing.
 * @param {number | undefined} fd
 */
export function readinessPipe(fd) {
  let closed = fd === undefined;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      closeSync(/** @type {number} */ (fd));
    } catch {
      // Not open (EBADF): nothing to leak.
    }
  };
  return {
    /**
     * Tells the process backend we are listening, faster than its /healthz polling would find
     * out. A failure only means it polls; the descriptor is closed either way. Once, and never
     * after close().
     */
    announce() {
      if (closed) return;
      try {
        writeSync(/** @type {number} */ (fd), "ready\n");
      } catch (err) {
        console.error(`[fizz] readiness not announced: ${/** @type {Error} */ (err).message}`);
      }
      close();
    },
    /** Closed unwritten: nobody reads it any more (a specialize came in first). */
    close,
  };
}

/**
 * @param {{
 *   instance: Instance,
 *   server: Server,
 *   unfinished: Set<Res>,
 *   graceMs: number,
 *   watchStdin: boolean,
 * }} o `unfinished`: responses not yet over; `watchStdin`: the parent holds our stdin pipe
 *   (FIZZ_PARENT_STDIN=1)
 */
export function lifecycle({ instance, server, unfinished, graceMs, watchStdin }) {
  /**
   * Stop accepting, finish the calls in flight, exit. A repeated signal means "now"; a repeated
   * trigger that is not a signal (stdin closing after a SIGTERM) changes nothing.
   * @param {string} reason
   * @param {boolean} isSignal
   */
  function shutdown(reason, isSignal) {
    if (instance.draining) {
      if (!isSignal) return;
      console.error(`[fizz] ${reason} again: exiting without waiting`);
      process.exit(1);
    }
    instance.draining = true;
    console.error(`[fizz] ${reason}: no new connections; finishing in-flight calls`);
    for (const res of unfinished) if (!res.headersSent) res.setHeader("connection", "close");
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    setTimeout(() => {
      console.error(`[fizz] calls still running after ${graceMs}ms; exiting`);
      process.exit(1);
    }, graceMs).unref();
  }

  let parentWatched = false;
  return {
    shutdown,
    /**
     * While draining, a connection whose last response just ended is idle: close it now instead
     * of letting it linger for keepAliveTimeout and hold the exit back.
     */
    afterResponse() {
      if (instance.draining) setImmediate(() => server.closeIdleConnections());
    },
    /**
     * The process backend's parent holds our stdin pipe: EOF means it is gone, even if it was
     * SIGKILLed, and an instance must not outlive the poolkeeper that tracks it (setpriv's
     * parent-death signal covers the first moments). Set up after listen (opening stdin costs
     * start-up time); an EOF that came earlier is still seen. Once.
     */
    watchParent() {
      if (parentWatched || !watchStdin) return;
      parentWatched = true;
      process.stdin.on("end", () => shutdown("parent closed stdin", false));
      process.stdin.on("error", () => shutdown("stdin failed", false));
      process.stdin.resume();
    },
  };
}
