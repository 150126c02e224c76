// @ts-check
/**
 * The function's return value → the HTTP response (docs/runtime-contract.md, Node).
 */

/** @typedef {import("node:http").ServerResponse} Res */

const RESPONSE_KEYS = new Set(["status", "statusCode", "headers", "body"]);

/** Raised for a return value the runtime cannot turn into a response; answered as FUNCTION_ERROR. */
export class ResultError extends Error {}

/**
 * A plain object with only response keys and a numeric status (when it has one) is a response;
 * anything else is the body. `{ status: "ok" }` is therefore JSON, not an invalid status.
 * @param {unknown} value
 * @returns {value is { status?: number, statusCode?: number, headers?: unknown, body?: unknown }}
 */
function isResponse(value) {
  if (
    typeof value !== "object" ||
    value === null ||
    Array.isArray(value) ||
    isBinary(value) ||
    isStream(value)
  ) {
    return false;
  }
  const keys = Object.keys(value);
  if (keys.length === 0 || !keys.every((k) => RESPONSE_KEYS.has(k))) return false;
  const v = /** @type {Record<string, unknown>} */ (value);
  if (!("status" in v) && !("statusCode" in v) && !("body" in v)) return false;
  return ["status", "statusCode"].every((k) => v[k] === undefined || typeof v[k] === "number");
}

/** @param {unknown} value @returns {value is Uint8Array} */
function isBinary(value) {
  return value instanceof Uint8Array;
}

/**
 * Node Readable or web ReadableStream, both duck-typed: streams from another copy of `stream`
 * count, and the check does not touch the global `ReadableStream`, whose first use loads Node's
 * web streams (milliseconds, on the first call of every function otherwise).
 * @param {unknown} value
 * @returns {value is AsyncIterable<unknown>}
 */
export function isStream(value) {
  if (typeof value !== "object" || value === null) return false;
  const v = /** @type {Record<string | symbol, unknown>} */ (value);
  if (typeof v[Symbol.asyncIterator] !== "function") return false;
  return (
    (typeof v.pipe === "function" && typeof v.on === "function") ||
    (typeof v.getReader === "function" && typeof v.pipeTo === "function")
  );
}

/**
 * Writes the function's return value. Throws ResultError before anything is sent when the value
 * cannot be answered (bad status, bad headers, unserializable body).
 * @param {Res} res
 * @param {unknown} result
 */
export async function sendResult(res, result) {
  if (result === undefined) {
    res.statusCode = 204;
    res.end();
    return;
  }
  let status = 200;
  /** @type {unknown} */
  let body = result;
  if (isResponse(result)) {
    status = result.status ?? result.statusCode ?? 200;
    checkStatus(status);
    setHeaders(res, result.headers);
    body = result.body;
  }
  res.statusCode = status;

  if (body === undefined) {
    res.setHeader("content-length", 0);
    res.end();
    return;
  }
  if (isStream(body)) {
    await sendStream(res, body);
    return;
  }
  /** @type {Buffer} */
  let payload;
  if (typeof body === "string") {
    defaultType(res, "text/plain; charset=utf-8");
    payload = Buffer.from(body, "utf8");
  } else if (isBinary(body)) {
    defaultType(res, "application/octet-stream");
    payload = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  } else {
    let json;
    try {
      json = JSON.stringify(body);
    } catch (err) {
      throw new ResultError(
        `the returned body is not JSON-serializable: ${/** @type {Error} */ (err).message}`,
      );
    }
    if (json === undefined)
      throw new ResultError(`the returned body (${typeof body}) is not JSON-serializable`);
    defaultType(res, "application/json; charset=utf-8");
    payload = Buffer.from(json, "utf8");
  }
  res.setHeader("content-length", payload.length);
  res.end(payload);
}

/** @param {unknown} status */
export function checkStatus(status) {
  if (
    !Number.isInteger(status) ||
    /** @type {number} */ (status) < 200 ||
    /** @type {number} */ (status) > 599
  ) {
    throw new ResultError(
      `invalid status ${String(status)}: must be an integer between 200 and 599`,
    );
  }
}

/**
 * @param {Res} res
 * @param {unknown} headers
 */
export function setHeaders(res, headers) {
  if (headers === undefined || headers === null) return;
  if (typeof headers !== "object" || Array.isArray(headers))
    throw new ResultError("headers must be an object");
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || value === null) continue;
    try {
      // setHeader validates names and values (no CR/LF), which blocks response splitting through
      // values a function copies from its input.
      res.setHeader(name, Array.isArray(value) ? value.map(String) : String(value));
    } catch (err) {
      throw new ResultError(
        `invalid header ${JSON.stringify(name)}: ${/** @type {Error} */ (err).message}`,
      );
    }
  }
}

/**
 * @param {Res} res
 * @param {string} type
 */
export function defaultType(res, type) {
  if (!res.hasHeader("content-type")) res.setHeader("content-type", type);
}

/**
 * Streams with chunked encoding, one write per chunk: with Nagle off every chunk leaves at once,
 * which is what server-sent events need. Honors backpressure; stops reading when the client goes.
 * @param {Res} res
 * @param {AsyncIterable<unknown>} stream
 */
export async function sendStream(res, stream) {
  defaultType(res, "application/octet-stream");
  res.removeHeader("content-length");
  res.flushHeaders();
  // A client that leaves must stop the source now, not at its next chunk: an SSE source may be
  // quiet for minutes while holding the concurrency slot.
  let clientGone = false;
  const onClose = () => {
    if (res.writableFinished) return;
    clientGone = true;
    const source = /** @type {{ destroy?: () => void }} */ (stream);
    if (typeof source.destroy === "function") source.destroy();
  };
  res.once("close", onClose);
  try {
    for await (const chunk of stream) {
      if (res.destroyed) break; // leaving the loop also cancels a web stream
      const data =
        typeof chunk === "string" || chunk instanceof Uint8Array
          ? chunk
          : (JSON.stringify(chunk) ?? String(chunk));
      if (!res.write(data)) await drained(res);
    }
    res.end();
  } catch (err) {
    if (!clientGone) {
      // Status and headers are gone already; cutting the connection is the only honest signal.
      const detail = err instanceof Error ? err.stack : String(err);
      console.error(`[fizz] response stream failed: ${detail}`);
    }
    res.destroy();
  } finally {
    res.off("close", onClose);
  }
}

/** @param {Res} res */
function drained(res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve(undefined);
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
