// @ts-check
/**
 * User traffic (docs/runtime-contract.md): instance check, admission, body, call, response.
 */
import { closeCall, inCall, markCalls, openCall } from "./call-marker.mjs";
import { buildContext, parseBody } from "./context.mjs";
import { readBody, sendError, sendHttpError } from "./http.mjs";
import { CallbackAnswer, sendCallbackAnswer } from "./express-send.mjs";
import { isRuntimeRefusal } from "./request.mjs";
import { ResultError, sendResult } from "./respond.mjs";

/** @typedef {import("node:http").IncomingMessage} Req */
/** @typedef {import("node:http").ServerResponse} Res */
/** @typedef {import("./specialize.mjs").Instance} Instance */
/** @typedef {import("./specialize.mjs").Config} Config */
/** @typedef {import("./specialize.mjs").Active} Active */

// With the invoker, which loads right after listen: before any user code can print.
markCalls(process.stdout);
markCalls(process.stderr);

/**
 * @param {Req} req
 * @param {Res} res
 * @param {string | string[] | undefined} target the X-Fizz-Instance header
 * @param {Instance} instance
 * @param {Config} config
 */
export async function invoke(req, res, target, instance, config) {
  const { instanceId } = config;
  if (target !== undefined && instanceId !== undefined && target !== instanceId) {
    const message = `this is instance ${instanceId}, not ${String(target)}`;
    return sendError(res, 421, "MISDIRECTED", message, { retryable: true });
  }
  const { active } = instance;
  if (!active) {
    const why =
      instance.state === "failed"
        ? "the function failed to load"
        : "the instance is not specialized";
    return sendError(res, 503, "NOT_SPECIALIZED", why, { retryable: true });
  }
  const { limiter, concurrency } = active;
  const ticket = limiter.acquire();
  if (!ticket) {
    res.setHeader("retry-after", "1");
    const message = `${concurrency} calls running and ${concurrency} queued`;
    return sendError(res, 429, "INSTANCE_BUSY", message, { retryable: true });
  }
  // A client that leaves while its call is queued gives its place up.
  res.once("close", ticket.release);
  await ticket.ready;
  res.off("close", ticket.release);
  if (res.destroyed) return ticket.release();
  // Once running, the slot is the call's until its function has returned, even if the client
  // left (the gateway's timeout): freeing it then would run more than `concurrency` functions at
  // once. And it is free by the time the client has the answer, which is sent only once the
  // function has answered: released right before the answer's last write (`end`, which a streamed
  // body's pipe calls too), since the gateway sends its next call the moment the answer arrives
  // (docs/runtime-contract.md). The `finally` covers a call that ends without an answer written.
  const end = res.end;
  /** @type {any} */ (res).end = function (/** @type {any[]} */ ...args) {
    ticket.release();
    return end.apply(this, /** @type {any} */ (args));
  };
  // The call's output is marked with its request id until its answer is sent, streams included.
  const call = openCall(req.headers["x-request-id"]);
  try {
    return await inCall(call, () => serve(req, res, active, config));
  } finally {
    ticket.release();
    closeCall(call);
  }
}

/**
 * @param {Req} req
 * @param {Res} res
 * @param {Active} active
 * @param {Config} config
 */
async function serve(req, res, { handler, fn }, config) {
  let context;
  try {
    const rawBody = await readBody(req, config.maxBodyBytes);
    const body = parseBody(req.headers["content-type"], rawBody);
    context = buildContext(req, rawBody, body, fn, config.formMaxBytes);
  } catch (err) {
    return sendHttpError(res, err);
  }

  let result;
  try {
    result = await callHandler(handler, context);
  } catch (err) {
    // The function read request.body of an over-limit form: the 413 Express would have sent
    // before the call. Anything else the function throws, whatever it looks like, is its error.
    if (isRuntimeRefusal(err)) return sendHttpError(res, err);
    console.error(`[fizz] function error (request ${context.requestId}):`, err);
    const message = err instanceof Error ? err.message : String(err);
    return sendError(res, 500, "FUNCTION_ERROR", message);
  }
  try {
    await (result instanceof CallbackAnswer
      ? sendCallbackAnswer(res, result)
      : sendResult(res, result));
  } catch (err) {
    if (!(err instanceof ResultError)) throw err;
    console.error(`[fizz] bad return value (request ${context.requestId}): ${err.message}`);
    // Drop whatever the function's headers had set; keep only what framing needs.
    for (const name of res.getHeaderNames()) if (name !== "connection") res.removeHeader(name);
    sendError(res, 500, "FUNCTION_ERROR", err.message);
  }
}

/**
 * Fission's two styles, told apart as Fission's Node environment does, by the declared
 * parameters: `(context)` returns (or resolves to) the result; `(context, callback)` answers by
 * calling `callback(status, body, headers)`, sent as Express would (express-send.mjs). A
 * callback-style function that instead resolves to a value answers with that value; one that
 * throws or rejects is a FUNCTION_ERROR either way. The first answer wins.
 * @param {import("./loader.mjs").Handler} handler
 * @param {unknown} context
 * @returns {Promise<unknown>}
 */
function callHandler(handler, context) {
  if (handler.length < 2) return Promise.resolve(handler(/** @type {object} */ (context)));
  return new Promise((resolve, reject) => {
    /** @type {(status?: number, body?: unknown, headers?: Record<string, string>) => void} */
    const callback = (status, body, headers) =>
      resolve(new CallbackAnswer(status ?? 200, body, headers));
    try {
      const returned = handler(/** @type {object} */ (context), callback);
      if (returned instanceof Promise) returned.then((v) => v !== undefined && resolve(v), reject);
    } catch (err) {
      reject(err);
    }
  });
}
