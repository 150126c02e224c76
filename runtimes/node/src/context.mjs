// @ts-check
/**
 * Request → the context object the function receives (docs/runtime-contract.md, Node).
 */
import { HttpError } from "./http.mjs";
import { FORM_MAX_BYTES, FissionRequest } from "./request.mjs";

/** @typedef {import("node:http").IncomingMessage} Req */
/** @typedef {import("./validate.mjs").FunctionRef} FunctionRef */

const PARAM_PREFIX = "x-fizz-params-";

/**
 * `body` per the contract: parsed JSON for application/json (and +json), a string for text/* and
 * urlencoded forms, the Buffer otherwise.
 * @param {string | undefined} contentType
 * @param {Buffer} raw
 * @returns {unknown}
 */
export function parseBody(contentType, raw) {
  const [type = "", ...parameters] = (contentType ?? "").toLowerCase().split(";");
  const mime = type.trim();
  if (mime === "application/json" || mime.endsWith("+json")) {
    if (raw.length === 0) return undefined;
    try {
      return JSON.parse(raw.toString("utf8"));
    } catch (err) {
      throw new HttpError(
        400,
        "INVALID_BODY",
        `invalid JSON body: ${/** @type {Error} */ (err).message}`,
      );
    }
  }
  if (mime.startsWith("text/") || mime === "application/x-www-form-urlencoded") {
    const charset = parameters
      .map((p) => p.trim())
      .find((p) => p.startsWith("charset="))
      ?.slice(8)
      .replaceAll('"', "");
    if (!charset || charset === "utf-8" || charset === "utf8") return raw.toString("utf8");
    try {
      return new TextDecoder(charset).decode(raw);
    } catch {
      return raw.toString("utf8"); // unknown charset label: utf-8 is the only sane guess
    }
  }
  return raw;
}

/**
 * @param {Req} req
 * @param {Buffer} rawBody
 * @param {unknown} body
 * @param {FunctionRef} fn
 * @param {number} [formMaxBytes] FIZZ_FORM_MAX_BYTES: a larger form's `request.body` is a 413
 */
export function buildContext(req, rawBody, body, fn, formMaxBytes = FORM_MAX_BYTES) {
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  /** @type {Record<string, string | string[]>} */
  const query = {};
  if (q >= 0) {
    for (const [key, value] of new URLSearchParams(url.slice(q + 1))) {
      if (key === "__proto__") continue; // would replace the object's prototype, not add a key
      const seen = query[key];
      query[key] =
        seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value];
    }
  }
  // Route parameter names keep the case the gateway sent (req.headers lower-cases them).
  /** @type {Record<string, string>} */
  const params = {};
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = /** @type {string} */ (raw[i]);
    if (name.length > PARAM_PREFIX.length && name.toLowerCase().startsWith(PARAM_PREFIX)) {
      const param = name.slice(PARAM_PREFIX.length);
      if (param !== "__proto__") params[param] = /** @type {string} */ (raw[i + 1]);
    }
  }
  const headers = req.headers;
  const requestIdHeader = headers["x-request-id"];
  const requestId =
    typeof requestIdHeader === "string" && requestIdHeader
      ? requestIdHeader
      : globalThis.crypto.randomUUID();
  const method = req.method ?? "GET";
  return {
    request: new FissionRequest(req, method, url, path, query, params, body, rawBody, formMaxBytes),
    method,
    path,
    query,
    headers,
    body,
    params,
    function: fn,
    requestId,
  };
}
