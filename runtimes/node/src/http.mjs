// @ts-check
/**
 * Small HTTP helpers shared by the internal endpoints and the invoker. Every error the runtime
 * produces itself has the platform's shape: {"error":{"code","message","retryable",...}}.
 */

/** @typedef {import("node:http").IncomingMessage} Req */
/** @typedef {import("node:http").ServerResponse} Res */

/**
 * A request the runtime answers itself (400, 413). `close` when the connection's framing can no
 * longer be trusted (body cut short or left unread), so it must not be reused.
 */
export class HttpError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {boolean} [close]
   * @param {string} [field] the request field at fault, for a 400 VALIDATION_FAILED
   */
  constructor(status, code, message, close = false, field = undefined) {
    super(message);
    this.status = status;
    this.code = code;
    this.close = close;
    this.field = field;
  }
}

/**
 * Answers an HttpError; anything else is rethrown (a bug, answered 500 INTERNAL further up).
 * @param {Res} res
 * @param {unknown} err
 */
export function sendHttpError(res, err) {
  if (!(err instanceof HttpError)) throw err;
  if (err.close) res.setHeader("connection", "close");
  sendError(
    res,
    err.status,
    err.code,
    err.message,
    err.field === undefined ? {} : { field: err.field },
  );
}

/**
 * @param {Res} res
 * @param {number} status
 * @param {unknown} value
 */
export function sendJson(res, status, value) {
  const body = Buffer.from(JSON.stringify(value));
  res.statusCode = status;
  res.setHeader("content-type", "application/json; charset=utf-8");
  res.setHeader("content-length", body.length);
  res.end(body);
}

/**
 * @param {Res} res
 * @param {number} status
 * @param {string} code
 * @param {string} message
 * @param {{ retryable?: boolean, field?: string }} [extra]
 */
export function sendError(res, status, code, message, extra = {}) {
  if (res.headersSent) {
    // Too late for a status line: cut the connection so the client sees a truncated response
    // instead of a response that looks complete.
    res.destroy();
    return;
  }
  const error = { code, message, retryable: extra.retryable ?? false };
  if (extra.field !== undefined) Object.assign(error, { field: extra.field });
  sendJson(res, status, { error });
}

/**
 * Reads the whole request body. The limit is checked against Content-Length up front and against
 * the bytes actually received, so a chunked upload cannot grow the process without bound.
 * @param {Req} req
 * @param {number} limit
 * @returns {Promise<Buffer>}
 */
export function readBody(req, limit) {
  const declared = Number(req.headers["content-length"]);
  if (declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    /** @type {Buffer[]} */
    const chunks = [];
    let size = 0;
    req.on("data", (/** @type {Buffer} */ chunk) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners("data");
        req.resume();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    req.once("end", () =>
      resolve(
        chunks.length === 1 ? /** @type {Buffer} */ (chunks[0]) : Buffer.concat(chunks, size),
      ),
    );
    req.once("error", reject);
    req.once("close", () => {
      if (!req.complete)
        reject(new HttpError(400, "INVALID_BODY", "request body was cut short", true));
    });
  });
}

/** @param {number} limit */
function tooLarge(limit) {
  return new HttpError(413, "PAYLOAD_TOO_LARGE", `request body exceeds ${limit} bytes`, true);
}
