import { headers as natsHeaders, Match, type MsgHdrs } from "@nats-io/transport-node";
import {
  parseTraceparent,
  formatTraceparent,
  TRACEPARENT,
  TRACESTATE,
  type TraceContext,
} from "./traceparent";

/**
 * Trace context in NATS message headers (nats.js v3 `MsgHdrs`): `traceparent`, `tracestate` and
 * `x-request-id`, the same names as over HTTP, so a user publishing to a subject trigger with
 * `nats pub -H traceparent:...` continues their own trace.
 */
export const REQUEST_ID = "x-request-id";

/** Sets the context (and request id) on `h`, a new header set by default. */
export function putTrace(
  ctx: TraceContext,
  requestId?: string,
  h: MsgHdrs = natsHeaders(),
): MsgHdrs {
  h.set(TRACEPARENT, formatTraceparent(ctx));
  if (ctx.traceState !== undefined) h.set(TRACESTATE, ctx.traceState);
  else h.delete(TRACESTATE);
  if (requestId !== undefined) h.set(REQUEST_ID, requestId);
  return h;
}

export interface ReceivedTrace {
  /** Undefined when absent, repeated or malformed: the receiver starts a new trace. */
  trace: TraceContext | undefined;
  requestId: string | undefined;
}

/** Reads what `putTrace` (or any W3C-speaking publisher, in any header case) set. */
export function takeTrace(h: MsgHdrs | undefined): ReceivedTrace {
  if (h === undefined) return { trace: undefined, requestId: undefined };
  const parents = h.values(TRACEPARENT, Match.IgnoreCase);
  const states = h.values(TRACESTATE, Match.IgnoreCase);
  const ids = h.values(REQUEST_ID, Match.IgnoreCase);
  const id = ids.length === 1 ? ids[0] : undefined;
  return {
    trace:
      parents.length === 1
        ? parseTraceparent(parents[0], states.length > 0 ? states.join(",") : undefined)
        : undefined,
    requestId: id !== undefined && isSaneRequestId(id) ? id : undefined,
  };
}

/** What a request id may look like when it arrives from elsewhere (it ends up in log lines). */
export function isSaneRequestId(v: string): boolean {
  return v.length > 0 && v.length <= 200 && /^[\x21-\x7e]+$/.test(v);
}
