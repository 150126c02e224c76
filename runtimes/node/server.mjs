#!/usr/bin/env node
// @ts-check
/**
 * Fizz environment loader for Node.js functions; the contract is docs/runtime-contract.md.
 *
 * The process starts generic ("warm"), is specialized exactly once with one function revision, and
 * from then on serves only that function. It is also the cold-start path when the pool is empty, so
 * it has no dependencies and imports only Node built-ins and its own small modules.
 *
 * Trust: the internal endpoints are unauthenticated, like every Fission-style loader; whoever can
 * reach the port before the poolkeeper can specialize the instance, so the port must only be
 * reachable from the platform (network policy / loopback). Once specialized, a second specialize
 * is refused, so the function cannot be swapped underneath its traffic.
 */
import { createServer } from "node:http";
import { sendError, sendJson } from "./src/http.mjs";
import { invoke } from "./src/invoke.mjs";
import { specialize } from "./src/specialize.mjs";

/** @typedef {import("node:http").IncomingMessage} Req */
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

const port = intFromEnv("PORT", 8888);
const host = process.env.HOST || "0.0.0.0";
/** @type {Config} */
const config = {
  instanceId: process.env.FIZZ_INSTANCE_ID || undefined,
  workdir: process.env.FIZZ_WORKDIR || undefined,
  maxBodyBytes: intFromEnv("FIZZ_MAX_BODY_BYTES", 64 * 1024 * 1024),
};
/** Kubernetes' default terminationGracePeriodSeconds is 30: finish well inside it. */
const SHUTDOWN_GRACE_MS = 25_000;

/** @type {Instance} */
const instance = { state: "warm", active: undefined, draining: false };
/** Responses not yet over; on shutdown the ones with unsent headers get `Connection: close`. */
/** @type {Set<Res>} */
const unfinished = new Set();

const server = createServer({ noDelay: true, keepAlive: true }, (req, res) => {
  unfinished.add(res);
  res.once("close", () => afterResponse(res));
  if (instance.draining) res.setHeader("connection", "close");
  const target = req.headers["x-fizz-instance"];
  if (target === undefined) {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    if (path === "/healthz" || path === "/readyz") return probe(req, res, path);
    if (path === "/v2/specialize") {
      if (req.method !== "POST") return methodNotAllowed(res, "POST");
      return void specialize(req, res, instance, config).catch((err) => internalError(res, err));
    }
  }
  void invoke(req, res, target, instance, config).catch((err) => internalError(res, err));
});
// Longer than any reasonable client idle timeout, so the gateway's pooled connection is never
// closed here at the moment it sends a request on it.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

/**
 * @param {Req} req
 * @param {Res} res
 * @param {string} path
 */
function probe(req, res, path) {
  if (req.method !== "GET" && req.method !== "HEAD") return methodNotAllowed(res, "GET, HEAD");
  const state = instance.state === "specializing" ? "warm" : instance.state;
  if (path === "/healthz") return sendJson(res, 200, { status: "ok", state });
  const ready = instance.state === "specialized" && !instance.draining;
  sendJson(res, ready ? 200 : 503, { status: ready ? "ready" : "not-ready", state });
}

/**
 * @param {Res} res
 * @param {string} allow
 */
function methodNotAllowed(res, allow) {
  res.setHeader("allow", allow);
  sendError(res, 405, "METHOD_NOT_ALLOWED", `use ${allow}`);
}

/**
 * @param {Res} res
 * @param {unknown} err
 */
function internalError(res, err) {
  console.error("[fizz] internal error:", err);
  sendError(res, 500, "INTERNAL", "internal error in the runtime", { retryable: true });
}

// A promise the function forgot to await must not take down the calls running next to it.
process.on("unhandledRejection", (reason) => {
  console.error("[fizz] unhandled promise rejection in the function:", reason);
});

/** @param {Res} res */
function afterResponse(res) {
  unfinished.delete(res);
  // While draining, a connection whose last response just ended is idle: close it now instead of
  // letting it linger for keepAliveTimeout and hold the exit back.
  if (instance.draining) setImmediate(() => server.closeIdleConnections());
}

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
    console.error(`[fizz] calls still running after ${SHUTDOWN_GRACE_MS}ms; exiting`);
    process.exit(1);
  }, SHUTDOWN_GRACE_MS).unref();
}
process.on("SIGTERM", () => shutdown("SIGTERM", true));
process.on("SIGINT", () => shutdown("SIGINT", true));
if (process.env.FIZZ_PARENT_STDIN === "1") {
  // The process backend's parent holds our stdin pipe: EOF means it is gone, even if it was
  // SIGKILLed, and an instance must not outlive the poolkeeper that tracks it.
  process.stdin.on("end", () => shutdown("parent closed stdin", false));
  process.stdin.on("error", () => shutdown("stdin failed", false));
  process.stdin.resume();
}

server.on("error", (err) => {
  console.error(`[fizz] cannot listen on ${host}:${port}: ${err.message}`);
  process.exit(1);
});
server.listen(port, host, () => {
  const as = config.instanceId ? ` as ${config.instanceId}` : "";
  console.error(`[fizz] node runtime listening on ${host}:${port}${as}`);
});
