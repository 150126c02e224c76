// @ts-check
/**
 * The request listener: probes answered here, a specialize or a call handed to its handler.
 *
 * Loaded before listen (server.mjs imports it statically), so it imports only the probe's
 * helpers; the handlers (specialize.mjs, invoke.mjs) load right after listen (loadHandlers).
 */
import { sendError, sendJson } from "./http.mjs";

/** @typedef {import("node:http").IncomingMessage} Req */
/** @typedef {import("node:http").ServerResponse} Res */
/** @typedef {import("./specialize.mjs").Instance} Instance */
/** @typedef {import("./specialize.mjs").Config} Config */
/** @typedef {(req: Req, res: Res) => void} Listener */
/**
 * @typedef {{
 *   specialize: typeof import("./specialize.mjs").specialize,
 *   invoke: typeof import("./invoke.mjs").invoke,
 * }} Handlers
 */

/** Loaded once, right after listen; a request that comes earlier (not a probe) waits for it. */
/** @type {Promise<Handlers> | undefined} */
let loading;
/** Set once loaded, so that requests then go straight to the handler. */
/** @type {Handlers | undefined} */
let handlers;
export function loadHandlers() {
  loading ??= Promise.all([import("./specialize.mjs"), import("./invoke.mjs")]).then(
    ([{ specialize }, { invoke }]) => (handlers = { specialize, invoke }),
  );
  return loading;
}

/**
 * @typedef {object} ListenerHooks
 * @property {() => void} [onSpecialize] a specialize request has come in
 * @property {() => void} [afterCall] once a call (not a probe, not a specialize) has been answered
 * @property {() => void} [afterResponse] each time a response is over (after it left `inFlight`)
 */

/**
 * The request listener of one instance. The warm-up rehearsal builds a second one for its own
 * throwaway instance, so that it runs exactly the code real requests run.
 * @param {Instance} instance
 * @param {Config} config
 * @param {Set<Res>} inFlight responses not yet over, for the drain on shutdown
 * @param {ListenerHooks} [hooks]
 * @returns {Listener}
 */
export function createListener(instance, config, inFlight, hooks = {}) {
  const { onSpecialize, afterResponse } = hooks;
  let afterCall = hooks.afterCall;
  return (req, res) => {
    inFlight.add(res);
    res.once("close", () => {
      inFlight.delete(res);
      afterResponse?.();
    });
    if (instance.draining) res.setHeader("connection", "close");
    const target = req.headers["x-fizz-instance"];
    let isSpecialize = false;
    if (target === undefined) {
      const url = req.url ?? "/";
      const q = url.indexOf("?");
      const path = q < 0 ? url : url.slice(0, q);
      if (path === "/healthz" || path === "/readyz") return probe(req, res, path, instance);
      if (path === "/v2/specialize") {
        if (req.method !== "POST") return methodNotAllowed(res, "POST");
        isSpecialize = true;
        onSpecialize?.();
      }
    }
    if (!isSpecialize && afterCall) {
      // Once: the first call's answer is what it waits for; later calls pay no listener for it.
      res.once("close", afterCall);
      afterCall = undefined;
    }
    /** @param {Handlers} h */
    const handle = (h) =>
      (isSpecialize
        ? h.specialize(req, res, instance, config)
        : h.invoke(req, res, target, instance, config)
      ).catch((err) => internalError(res, err));
    if (handlers) return void handle(handlers);
    loadHandlers().then(handle, (err) => internalError(res, err));
  };
}

/**
 * @param {Req} req
 * @param {Res} res
 * @param {string} path
 * @param {Instance} instance
 */
function probe(req, res, path, instance) {
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
