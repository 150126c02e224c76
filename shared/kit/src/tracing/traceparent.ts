/**
 * W3C Trace Context level 1 (https://www.w3.org/TR/trace-context/): the `traceparent` and
 * `tracestate` headers. Anything malformed is refused (undefined) and the caller starts a new trace
 * rather than passing garbage on: a client must not be able to make the platform emit a header
 * that breaks a collector or another vendor's parser.
 */

/** One hop's trace context: the trace, the span that is the parent of whatever comes next. */
export interface TraceContext {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string;
  /** 16 lower-case hex digits, not all zero. */
  readonly spanId: string;
  /** The `sampled` flag: the caller may have recorded this trace. */
  readonly sampled: boolean;
  /** A valid `tracestate` carried unchanged, or undefined. */
  readonly traceState: string | undefined;
}

export const TRACEPARENT = "traceparent";
export const TRACESTATE = "tracestate";

const ZERO_TRACE = "00000000000000000000000000000000";
const ZERO_SPAN = "0000000000000000";
/** Longest header accepted: a future version may append fields, but not without bound. */
const TRACEPARENT_MAX = 512;
const DASH = 45;
const ZERO = 48;
const F = 102;

/** Lower-case hex only: the spec refuses upper case. */
function isHex(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/**
 * Parses a `traceparent` (and its `tracestate`, kept only when valid). Undefined when the header is
 * malformed: wrong length, upper-case or non-hex digits, version ff, all-zero ids, or version 00
 * with anything after the flags. A future version is read as version 00's fields (the spec's
 * forward-compatibility rule).
 */
export function parseTraceparent(
  value: string | undefined,
  traceState?: string,
): TraceContext | undefined {
  if (value === undefined || value.length < 55 || value.length > TRACEPARENT_MAX) return undefined;
  // Checked by hand rather than with a regex: this runs for every request the gateway proxies.
  // `vv-<32 hex>-<16 hex>-ff`, then for a future version `-<anything>`.
  if (
    value.charCodeAt(2) !== DASH ||
    value.charCodeAt(35) !== DASH ||
    value.charCodeAt(52) !== DASH
  )
    return undefined;
  if (!isHex(value, 0, 2) || !isHex(value, 3, 35) || !isHex(value, 36, 52) || !isHex(value, 53, 55))
    return undefined;
  // The version read from its two char codes: no string made for it on this per-request path.
  const v0 = value.charCodeAt(0);
  const v1 = value.charCodeAt(1);
  if (v0 === F && v1 === F) return undefined;
  if (value.length > 55 && ((v0 === ZERO && v1 === ZERO) || value.charCodeAt(55) !== DASH))
    return undefined;
  const traceId = value.slice(3, 35);
  const spanId = value.slice(36, 52);
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  // The sampled bit is the low bit of the last hex digit.
  const flags = parseInt(value.charAt(54), 16);
  return {
    traceId,
    spanId,
    sampled: (flags & 1) === 1,
    traceState: traceState !== undefined && isValidTracestate(traceState) ? traceState : undefined,
  };
}

/** Version 00; only the `sampled` flag is set or clear (level 1: other bits must be zero). */
export function formatTraceparent(ctx: TraceContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-${ctx.sampled ? "01" : "00"}`;
}

export function isValidTraceId(id: string): boolean {
  return /^[0-9a-f]{32}$/.test(id) && id !== ZERO_TRACE;
}

export function isValidSpanId(id: string): boolean {
  return /^[0-9a-f]{16}$/.test(id) && id !== ZERO_SPAN;
}

/** Simple key, or multi-tenant `tenant@system`; value: printable ASCII but `,` `=`, no trailing space. */
const MEMBER =
  /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
const TRACESTATE_MAX = 8192;
const OWS = /^[ \t]+|[ \t]+$/g;

/** At most 32 list members, each `key=value` per level 1's grammar, keys unique; empty members allowed. */
export function isValidTracestate(value: string): boolean {
  if (value.length > TRACESTATE_MAX) return false;
  const keys = new Set<string>();
  for (const raw of value.split(",")) {
    // Only the grammar's OWS (space, tab): String.trim would also take \v, \f or U+00A0, which then
    // go out unchanged in an HTTP header that a client (undici) refuses to send.
    const member = raw.replace(OWS, "");
    if (member.length === 0) continue;
    if (!MEMBER.test(member)) return false;
    const key = member.slice(0, member.indexOf("="));
    if (keys.has(key)) return false;
    keys.add(key);
  }
  return keys.size <= 32;
}
