// @ts-check
/**
 * Fission's callback answer, `callback(status, body, headers)`, sent the way Fission's Node
 * environment sends it: each header through Express's `res.set`, then `res.send(body)`. So a
 * string without a Content-Type is HTML, a Buffer octet-stream, null an empty body and anything
 * else JSON, and text is declared UTF-8: functions written for Fission render as they did there.
 * Only Fission code uses the callback; the return form keeps the runtime's own rules
 * (respond.mjs), where a string is text/plain. Not copied from Express: no ETag and no 304
 * freshness check, and a stream without a Content-Type is declared octet-stream (Express sends
 * none, which lets a browser sniff it as HTML).
 */
import { essence, mediaTypeOf } from "./request.mjs";
import {
  ResultError,
  checkStatus,
  defaultType,
  isStream,
  sendStream,
  setHeaders,
} from "./respond.mjs";

/** @typedef {import("node:http").ServerResponse} Res */

/** What a callback-style function passed to its callback. */
export class CallbackAnswer {
  /**
   * @param {unknown} status
   * @param {unknown} body
   * @param {unknown} headers
   */
  constructor(status, body, headers) {
    this.status = status;
    this.body = body;
    this.headers = headers;
  }
}

/**
 * Throws ResultError before anything is sent when the answer cannot be sent (bad status, bad
 * headers, a body that is not JSON-serializable).
 * @param {Res} res
 * @param {CallbackAnswer} answer
 */
export async function sendCallbackAnswer(res, { status, body, headers }) {
  checkStatus(status);
  setHeaders(res, headers);
  const declared = res.getHeader("content-type");
  if (Array.isArray(declared)) throw new ResultError("content-type must be a single value");
  if (declared !== undefined) res.setHeader("content-type", expressContentType(String(declared)));
  res.statusCode = /** @type {number} */ (status);

  if (isStream(body)) return sendStream(res, body);
  /** @type {string | Buffer | undefined} */
  let payload;
  if (body === undefined) {
    payload = undefined;
  } else if (body === null) {
    payload = "";
  } else if (typeof body === "string") {
    defaultType(res, "text/html");
    payload = body;
  } else if (ArrayBuffer.isView(body)) {
    defaultType(res, "application/octet-stream");
    payload = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  } else if (typeof body === "object" || typeof body === "number" || typeof body === "boolean") {
    payload = toJson(body);
    defaultType(res, "application/json; charset=utf-8");
  } else {
    throw new ResultError(`the callback's body (${typeof body}) cannot be sent`);
  }
  if (typeof payload === "string") {
    // The text goes out as UTF-8: say so, whatever charset the function named.
    const type = res.getHeader("content-type");
    if (typeof type === "string") res.setHeader("content-type", withUtf8(type));
    payload = Buffer.from(payload, "utf8");
  }
  if (status === 204 || status === 304 || status === 205) {
    // No body for these, as Express: 204 and 304 lose the headers that describe one.
    res.removeHeader("transfer-encoding");
    if (status === 205) {
      res.setHeader("content-length", 0);
    } else {
      res.removeHeader("content-type");
      res.removeHeader("content-length");
    }
    res.end();
    return;
  }
  res.setHeader("content-length", payload?.length ?? 0);
  res.end(payload);
}

/** @param {unknown} body */
function toJson(body) {
  try {
    return JSON.stringify(body) ?? "";
  } catch (err) {
    throw new ResultError(
      `the callback's body is not JSON-serializable: ${/** @type {Error} */ (err).message}`,
    );
  }
}

/**
 * Express's `res.set("Content-Type", v)`: a short name becomes its media type (`json`), and a text
 * or JSON type without a charset gets `charset=utf-8`.
 * @param {string} value
 */
function expressContentType(value) {
  const type = mediaTypeOf(value.trim());
  if (type === undefined || /charset/i.test(type)) return type ?? value;
  const bare = essence(type);
  const textual =
    bare.startsWith("text/") || bare === "application/json" || bare === "application/javascript";
  return textual ? `${type}; charset=utf-8` : type;
}

/** @param {string} type */
function withUtf8(type) {
  const charset = /;\s*charset\s*=\s*("[^"]*"|[^;]*)/i;
  return charset.test(type) ? type.replace(charset, "; charset=utf-8") : `${type}; charset=utf-8`;
}
