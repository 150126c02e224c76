/**
 * Header handling for the proxy, on flat `[name, value, name, value]` lists (what node gives as
 * `rawHeaders` and what undici and `writeHead` accept), so no header objects are built per request.
 */

/** RFC 9110 §7.6.1 hop-by-hop headers, plus every `Proxy-*` header. */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

export function isHopByHop(lowerName: string): boolean {
  return HOP_BY_HOP.has(lowerName) || lowerName.startsWith("proxy-");
}

export interface ScannedRequest {
  /**
   * Headers to forward: hop-by-hop ones, those named in Connection, Host (the upstream gets its
   * own), and every header the gateway sets itself (X-Fizz-*, X-Forwarded-*, Forwarded,
   * X-Request-Id) removed. Dropping client-sent X-Fizz-* matters: a client must not forge route
   * parameters or the instance id the runtime checks; X-Forwarded-*: server.ts; traceparent and
   * tracestate are read into their own fields (the gateway sends its own).
   */
  headers: string[];
  host: string | undefined;
  /** -1 when absent. NaN when unparsable (refused by the caller). */
  contentLength: number;
  chunked: boolean;
  requestId: string | undefined;
  forwardedFor: string | undefined;
  forwardedHost: string | undefined;
  forwardedProto: string | undefined;
  /** RFC 7239 Forwarded, every instance joined; passed on only from a trusted proxy. */
  forwarded: string | undefined;
  /**
   * W3C trace context, never forwarded as sent: the gateway passes its own (child) context on.
   * A repeated `traceparent` is kept as "" (invalid: the spec refuses a repeated header).
   */
  traceparent: string | undefined;
  /** Every `tracestate` joined with ",". */
  tracestate: string | undefined;
}

export function scanRequestHeaders(raw: readonly string[]): ScannedRequest {
  const out: ScannedRequest = {
    headers: [],
    host: undefined,
    contentLength: -1,
    chunked: false,
    requestId: undefined,
    forwardedFor: undefined,
    forwardedHost: undefined,
    forwardedProto: undefined,
    forwarded: undefined,
    traceparent: undefined,
    tracestate: undefined,
  };
  let connection: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    switch (lower) {
      case "host":
        out.host = value;
        continue;
      case "content-length":
        out.contentLength = /^\d+$/.test(value) ? Number(value) : Number.NaN;
        break; // forwarded: undici checks the body against it
      case "transfer-encoding":
        out.chunked = true;
        continue;
      case "expect":
        // node already answered `100-continue` to the client; an upstream 100 would make undici
        // fail the request ("bad response"), so the expectation stops here.
        continue;
      case "connection":
        connection = connection === undefined ? value : `${connection}, ${value}`;
        continue;
      case "x-request-id":
        if (out.requestId === undefined && isSaneRequestId(value)) out.requestId = value;
        continue;
      case "x-forwarded-for":
        out.forwardedFor = out.forwardedFor === undefined ? value : `${out.forwardedFor}, ${value}`;
        continue;
      case "x-forwarded-host":
        out.forwardedHost ??= value;
        continue;
      case "x-forwarded-proto":
        out.forwardedProto ??= value;
        continue;
      case "forwarded":
        out.forwarded = out.forwarded === undefined ? value : `${out.forwarded}, ${value}`;
        continue;
      case "traceparent":
        out.traceparent = out.traceparent === undefined ? value : "";
        continue;
      case "tracestate":
        out.tracestate = out.tracestate === undefined ? value : `${out.tracestate},${value}`;
        continue;
      default:
        if (isHopByHop(lower) || lower.startsWith("x-fizz-")) continue;
    }
    out.headers.push(name, value);
  }
  if (connection !== undefined) out.headers = withoutConnectionNamed(out.headers, connection);
  return out;
}

function isSaneRequestId(v: string): boolean {
  return v.length > 0 && v.length <= 200 && /^[\x21-\x7e]+$/.test(v);
}

const PLAIN_CONNECTION = /^\s*(?:keep-alive|close)\s*$/i;

/** Removes the headers a Connection header names (the usual `keep-alive`/`close` name none we keep). */
function withoutConnectionNamed(headers: string[], connection: string): string[] {
  // What nearly every instance and client sends, checked without splitting on each message
  // (the exact strings first: no regex run per response).
  if (connection === "keep-alive" || connection === "close" || PLAIN_CONNECTION.test(connection))
    return headers;
  const named = new Set<string>();
  for (const token of connection.split(",")) {
    const t = token.trim().toLowerCase();
    if (t && t !== "close" && t !== "keep-alive") named.add(t);
  }
  if (named.size === 0) return headers;
  const kept: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i] as string;
    if (!named.has(name.toLowerCase())) kept.push(name, headers[i + 1] as string);
  }
  return kept;
}

/**
 * The upstream response's headers for the client: hop-by-hop ones and those named in Connection
 * dropped (node frames the body itself), X-Request-Id set to the gateway's. undici hands raw
 * headers as Buffers.
 */
export function responseHeaders(
  raw: readonly (Buffer | string)[],
  requestId: string,
  seen?: ResponseHeadersSeen,
): string[] {
  const out: string[] = [];
  let connection: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = raw[i] as Buffer | string;
    const v = raw[i + 1] as Buffer | string;
    const name = typeof n === "string" ? n : n.toString("latin1");
    const lower = name.toLowerCase();
    if (seen) {
      // Noted in the same pass, so the proxy does not scan the headers again per response.
      if (lower === "content-length") {
        seen.contentLength = true;
        seen.length = Number(typeof v === "string" ? v : v.toString("latin1"));
      } else if (lower === "retry-after") seen.retryAfter = true;
    }
    if (lower === "connection") {
      const value = typeof v === "string" ? v : v.toString("latin1");
      connection = connection === undefined ? value : `${connection}, ${value}`;
      continue;
    }
    if (isHopByHop(lower) || lower === "x-request-id") continue;
    out.push(name, typeof v === "string" ? v : v.toString("latin1"));
  }
  const kept = connection === undefined ? out : withoutConnectionNamed(out, connection);
  kept.push("x-request-id", requestId);
  return kept;
}

export interface ResponseHeadersSeen {
  contentLength: boolean;
  /** The Content-Length's value, -1 without one (NaN if unparsable: the parser refused it). */
  length: number;
  retryAfter: boolean;
}

/** Value of a header in a flat list (case-insensitive), or undefined. */
export function headerValue(headers: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if ((headers[i] as string).toLowerCase() === lowerName) return headers[i + 1];
  }
  return undefined;
}
