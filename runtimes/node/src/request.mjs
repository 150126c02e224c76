// @ts-check
/**
 * `context.request`: the parts of Express's request that functions written for Fission's Node
 * environment use (Fission passes Express 5's `req`, behind its body parsers). One class, so a call
 * costs one allocation: everything derived (the parsed form, host, address) is computed on first
 * use by prototype getters, never for a function that does not ask.
 */
import { parse as parseQueryString } from "node:querystring";
import { HttpError } from "./http.mjs";

/** @typedef {import("node:http").IncomingMessage} Req */

const FORM = "application/x-www-form-urlencoded";

/**
 * Short names (file extensions) Express accepts where a media type goes: `req.is("json")`, a
 * `Content-Type` of `"html"`. The common ones only; a name not listed matches nothing.
 * @type {ReadonlyMap<string, string>}
 */
const SHORT_NAMES = new Map([
  ["bin", "application/octet-stream"],
  ["css", "text/css"],
  ["csv", "text/csv"],
  ["gif", "image/gif"],
  ["htm", "text/html"],
  ["html", "text/html"],
  ["jpeg", "image/jpeg"],
  ["jpg", "image/jpeg"],
  ["js", "text/javascript"],
  ["json", "application/json"],
  ["md", "text/markdown"],
  ["mjs", "text/javascript"],
  ["pdf", "application/pdf"],
  ["png", "image/png"],
  ["svg", "image/svg+xml"],
  ["text", "text/plain"],
  ["txt", "text/plain"],
  ["webp", "image/webp"],
  ["xml", "application/xml"],
  ["yaml", "application/yaml"],
  ["zip", "application/zip"],
]);

/**
 * `json` → `application/json`; a name with a `/` is already a media type.
 * @param {string} name
 * @returns {string | undefined}
 */
export function mediaTypeOf(name) {
  if (name.includes("/")) return name;
  return SHORT_NAMES.get(name.toLowerCase());
}

/**
 * The `type/subtype` of a Content-Type, lower-cased, without parameters; "" when absent.
 * @param {string | undefined} contentType
 */
export function essence(contentType) {
  if (!contentType) return "";
  const semi = contentType.indexOf(";");
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/**
 * type-is's matching: `*` for either half, and `*\/*+json` for any `+json` subtype.
 * @param {string} pattern
 * @param {string} actual
 */
function matches(pattern, actual) {
  const [type, subtype, extra] = pattern.toLowerCase().split("/");
  const slash = actual.indexOf("/");
  if (subtype === undefined || extra !== undefined || slash < 0) return false;
  if (type !== "*" && type !== actual.slice(0, slash)) return false;
  const actualSubtype = actual.slice(slash + 1);
  if (subtype.startsWith("*+")) return actualSubtype.endsWith(subtype.slice(1));
  return subtype === "*" || subtype === actualSubtype;
}

/** Express's `urlencoded` parameterLimit: more `&`-separated pairs answer 413. */
export const FORM_MAX_PARAMS = 1000;
/** FIZZ_FORM_MAX_BYTES's default, as Fission's BODY_PARSER_LIMIT (1mb). */
export const FORM_MAX_BYTES = 1024 * 1024;

/**
 * The refusals the `body` getter itself threw. The invoker answers these with their status
 * instead of 500 FUNCTION_ERROR; a WeakSet, because user code can construct an HttpError (or any
 * look-alike) but cannot add to this set.
 * @type {WeakSet<object>}
 */
const refusals = new WeakSet();

/**
 * Whether `err` is a refusal of the runtime's own (an over-limit form), thrown out of the
 * function only because the function read `request.body`.
 * @param {unknown} err
 * @returns {err is HttpError}
 */
export function isRuntimeRefusal(err) {
  return typeof err === "object" && err !== null && refusals.has(err);
}

/** @param {string} message */
function refuse(message) {
  const err = new HttpError(413, "PAYLOAD_TOO_LARGE", message);
  refusals.add(err);
  return err;
}

/**
 * A form body, as Express's `urlencoded({ extended: false })` parses it: node's querystring, so
 * repeated keys are arrays and the object has no prototype (`__proto__` or `constructor` in the
 * form are plain keys; nothing reaches Object.prototype). Bounded as Express bounds it, or one
 * request of `a&a&a…` holds the event loop for seconds and hundreds of MB (64 MiB: 3.5 s): over
 * `maxBytes` or FORM_MAX_PARAMS pairs is a 413, checked (a byte count, then a scan for `&` that
 * stops at the limit) before anything is allocated. The raw string stays in `context.body`.
 * @param {string} text
 * @param {number} bytes the body's size on the wire
 * @param {number} maxBytes
 */
function parseForm(text, bytes, maxBytes) {
  const raw = "context.body holds the raw string";
  if (bytes > maxBytes)
    throw refuse(
      `form body of ${bytes} bytes is over the ${maxBytes}-byte limit for parsing request.body ` +
        `(FIZZ_FORM_MAX_BYTES); ${raw}`,
    );
  let pairs = 1;
  for (let at = text.indexOf("&"); at >= 0; at = text.indexOf("&", at + 1))
    if (++pairs > FORM_MAX_PARAMS)
      throw refuse(
        `form has more than ${FORM_MAX_PARAMS} parameters, the limit for parsing request.body; ${raw}`,
      );
  return parseQueryString(text, "&", "=", { maxKeys: FORM_MAX_PARAMS });
}

export class FissionRequest {
  /** The request body per the contract; for a form, the string until `body` is first read. */
  #body;
  /** @type {boolean} */
  #bodyFinal;
  /** @type {Req} */
  #req;
  /** @type {number} */
  #formMaxBytes;

  /**
   * @param {Req} req
   * @param {string} method
   * @param {string} url
   * @param {string} path
   * @param {Record<string, string | string[]>} query
   * @param {Record<string, string>} params
   * @param {unknown} body context.body
   * @param {Buffer} rawBody
   * @param {number} formMaxBytes a larger form's `body` is a 413 (parseForm)
   */
  constructor(req, method, url, path, query, params, body, rawBody, formMaxBytes) {
    this.method = method;
    this.url = url;
    this.originalUrl = url;
    this.path = path;
    this.query = query;
    this.headers = req.headers;
    this.params = params;
    this.rawBody = rawBody;
    this.#req = req;
    this.#body = body;
    this.#formMaxBytes = formMaxBytes;
    // Only a string can be a form still to parse: JSON, Buffers and undefined are final already.
    this.#bodyFinal = typeof body !== "string";
  }

  /**
   * As Express's body parsers leave it: parsed JSON, an object for a urlencoded form, a string for
   * text/*, else the Buffer (where Express would leave it undefined). Assignable, as in Express.
   * A form over the limits throws on every read (a 413 for the invoker), never the string.
   * @returns {unknown}
   */
  get body() {
    if (!this.#bodyFinal) {
      if (essence(this.headers["content-type"]) === FORM) {
        const text = /** @type {string} */ (this.#body);
        this.#body = parseForm(text, this.rawBody.length, this.#formMaxBytes);
      }
      this.#bodyFinal = true;
    }
    return this.#body;
  }

  set body(value) {
    this.#bodyFinal = true;
    this.#body = value;
  }

  /**
   * A request header, by name in any case; `referer` and `referrer` are the same header, as in
   * Express. Multiple values of one header come joined by ", " (set-cookie: an array).
   * @param {string} name
   * @returns {string | string[] | undefined}
   */
  get(name) {
    if (typeof name !== "string" || name === "")
      throw new TypeError("request.get(name): name must be a non-empty string");
    const lower = name.toLowerCase();
    if (lower === "referer" || lower === "referrer")
      return this.headers.referrer ?? this.headers.referer;
    return this.headers[lower];
  }

  /**
   * Alias of get(), as in Express.
   * @param {string} name
   */
  header(name) {
    return this.get(name);
  }

  /**
   * Express's `req.is`: the first of `types` (media types, `text/*`, `+json`, or short names like
   * `json`, `html`, `urlencoded`) that the Content-Type matches; false if none; null when the
   * request has no body. With no types, the Content-Type's media type.
   * @param {...(string | string[])} types
   * @returns {string | false | null}
   */
  is(...types) {
    const headers = this.headers;
    if (headers["transfer-encoding"] === undefined && headers["content-length"] === undefined)
      return null;
    const actual = essence(headers["content-type"]);
    if (actual === "" || !actual.includes("/")) return false;
    const wanted = types.flat();
    if (wanted.length === 0) return actual;
    for (const type of wanted) {
      if (typeof type !== "string") continue;
      const pattern =
        type === "urlencoded"
          ? FORM
          : type === "multipart"
            ? "multipart/*"
            : type.startsWith("+")
              ? `*/*${type}`
              : mediaTypeOf(type);
      if (pattern !== undefined && matches(pattern, actual))
        return type.startsWith("+") || type.includes("*") ? actual : type;
    }
    return false;
  }

  /**
   * The host the client asked for, without the port. The instance's own Host header names the
   * instance, so X-Forwarded-Host (which the gateway sets from the client's Host) comes first, as
   * in Express with `trust proxy`.
   * @returns {string | undefined}
   */
  get hostname() {
    const header = this.headers["x-forwarded-host"] ?? this.headers.host;
    if (typeof header !== "string" || header === "") return undefined;
    const comma = header.indexOf(",");
    const host = comma < 0 ? header.trim() : header.slice(0, comma).trim();
    const portFrom = host.startsWith("[") ? host.indexOf("]") + 1 : 0; // [::1]:8080
    const colon = host.indexOf(":", portFrom);
    return colon < 0 ? host : host.slice(0, colon);
  }

  /**
   * The client's address as the gateway saw it: the last X-Forwarded-For entry, the one the
   * gateway appended (earlier entries are whatever the client sent, so never trusted); without
   * the header, the connection's peer. Express with `trust proxy` set to one hop.
   * @returns {string | undefined}
   */
  get ip() {
    const forwarded = this.headers["x-forwarded-for"];
    if (typeof forwarded === "string" && forwarded !== "")
      return forwarded.slice(forwarded.lastIndexOf(",") + 1).trim();
    return this.#req.socket.remoteAddress;
  }

  /**
   * `http` or `https`, from X-Forwarded-Proto (the gateway's), else `http`: the instance itself
   * only speaks plain HTTP.
   * @returns {string}
   */
  get protocol() {
    const header = this.headers["x-forwarded-proto"];
    if (typeof header !== "string" || header === "") return "http";
    const comma = header.indexOf(",");
    return (comma < 0 ? header : header.slice(0, comma)).trim();
  }

  get secure() {
    return this.protocol === "https";
  }

  /**
   * The fields, body included (a prototype getter, which JSON.stringify would skip otherwise), so
   * a function that returns or logs the request serializes it as it did when it was a plain object.
   */
  toJSON() {
    const { method, url, originalUrl, path, query, headers, params, body, rawBody } = this;
    return { method, url, originalUrl, path, query, headers, params, body, rawBody };
  }

  get xhr() {
    const value = this.headers["x-requested-with"];
    return typeof value === "string" && value.toLowerCase() === "xmlhttprequest";
  }
}
