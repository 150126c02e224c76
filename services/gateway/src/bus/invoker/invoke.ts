import type { ErrorCode } from "@fizz/events";
import { formatTraceparent, linkedSignal, tracer, type TraceContext } from "@fizz/kit";
import type { Dispatcher } from "undici";
import {
  answerTimeout,
  headersBackstopMs,
  leaseError,
  ResponseTooLarge,
  upstreamClientAvailable,
  upstreamRequest,
  type WholeResponse,
  type FunctionLeases,
  type LeaseEntry,
  type LeaseManager,
  type WaitTicket,
} from "../../front-door/index";
import { CallFailure, type CallRequest, type CallResult } from "./call-types";
import {
  answered,
  failed,
  plainHeaders,
  rawHeaders,
  readBody,
  stopped,
  type Sent,
} from "./send-outcome";

export { CallFailure, type CallRequest, type CallResult } from "./call-types";

/** Scheduler and capacity answers that pass by themselves: wait and try again. */
const NOT_RUN_TRANSIENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "NO_CAPACITY",
  "TOO_MANY_REQUESTS",
  "UNAVAILABLE",
  "TIMEOUT",
  "INSTANCE_BUSY",
]);
const MAX_SENDS = 3;

/**
 * One call of a function for the bus side (async invocations, mq triggers): a synthetic request
 * sent on the same leases and upstream connections as HTTP traffic
 * (`LeaseManager.tryTake`/`acquire`, so bus calls count against the same slots, queue in the same
 * FIFO at the capacity limit and feed the same usage reports), with the whole request and
 * response in memory.
 *
 * Like the proxy, it sends a request again only where the function did not run: the connection
 * failed before anything was sent, 421 (misdirected), 503 NOT_SPECIALIZED, 429 INSTANCE_BUSY
 * (another instance). Anything after the function may have run is the caller's decision (the
 * invoker retries with back-off, a core mq trigger answers with the error).
 */
export async function callFunction(
  leases: LeaseManager,
  fl: FunctionLeases,
  req: CallRequest,
): Promise<CallResult> {
  let avoid: string | undefined;
  let last: CallFailure | undefined;
  for (let sends = 0, rounds = 0; sends < MAX_SENDS && rounds < 4 * MAX_SENDS; rounds++) {
    if (req.signal?.aborted) throw stopped();
    const e =
      leases.tryTake(fl, avoid) ?? (await acquire(leases, fl, avoid, req.signal, last, req.trace));
    if (e.dropped || e.revision < fl.minRevision) {
      // Handed over from the queue and dropped meanwhile (failed, old revision): not a send.
      leases.release(e, false);
      avoid = undefined;
      continue;
    }
    sends++;
    const r = await send(leases, e, req);
    if (r.kind === "done") return r.result;
    last = r.error;
    avoid = r.avoid;
  }
  throw last ?? new CallFailure("INSTANCE_FAILED", "no instance took the call", true);
}

async function acquire(
  leases: LeaseManager,
  fl: FunctionLeases,
  avoid: string | undefined,
  signal: AbortSignal | undefined,
  last: CallFailure | undefined,
  trace: TraceContext | undefined,
): Promise<LeaseEntry> {
  const ticket: WaitTicket = {};
  const onAbort = () => ticket.cancel?.();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await leases.acquire(fl, avoid, ticket, trace);
  } catch (err) {
    if (signal?.aborted) throw stopped();
    // No other instance for a retry after 429 INSTANCE_BUSY: the instance's own answer stands.
    if (avoid !== undefined && last) throw last;
    const fe = leaseError(err);
    throw new CallFailure(fe.code, fe.message, NOT_RUN_TRANSIENT.has(fe.code), fe);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

async function send(leases: LeaseManager, e: LeaseEntry, req: CallRequest): Promise<Sent> {
  const headers = [
    ...req.headers,
    "x-fizz-instance",
    e.instanceId,
    "x-fizz-function-revision",
    e.revisionText,
  ];
  const t = tracer();
  const span =
    t.recording && req.trace !== undefined
      ? t.startSpan("gateway.call", "client", req.trace, {
          "fizz.instance": e.instanceId,
          "server.address": e.address,
        })
      : undefined;
  const parent = span?.context ?? req.trace;
  if (parent !== undefined) {
    headers.push("traceparent", formatTraceparent(parent));
    if (parent.traceState !== undefined) headers.push("tracestate", parent.traceState);
  }
  try {
    const sent = await sendOnce(leases, e, req, headers);
    if (sent.kind === "done") span?.setAttribute("http.response.status_code", sent.result.status);
    else span?.fail(sent.error.message);
    return sent;
  } catch (err) {
    span?.fail((err as Error).message);
    throw err;
  } finally {
    span?.end();
  }
}

async function sendOnce(
  leases: LeaseManager,
  e: LeaseEntry,
  req: CallRequest,
  headers: string[],
): Promise<Sent> {
  const startedAt = performance.now();
  // Plain HTTP: the proxy's own client (upstream-request.ts), which keeps the function's timeout
  // itself, exact, and spares the gateway undici's parser; https instances stay with undici.
  if (upstreamClientAvailable && e.address.startsWith("http:"))
    return sendOwn(leases, e, req, headers, startedAt);
  // An exact timer for the function's timeout (undici's own ones above 1 s tick every ~0.5 s and
  // stay only as a backstop), as in the HTTP proxy.
  // req.signal is a runner's or consumer's stop signal, alive as long as the gateway: linked, not
  // AbortSignal.any, which on Node 20 leaves a WeakRef per call in the stop signal's set of
  // dependants for good (~30 per second in the soak's trigger traffic; linkedSignal).
  const op = linkedSignal([req.signal]);
  let timedOut: Error | undefined;
  const t =
    e.timeoutMs > 0
      ? setTimeout(() => op.abort((timedOut = answerTimeout())), e.timeoutMs)
      : undefined;
  try {
    return await sendOn(leases, e, req, headers, op.signal, startedAt, () => {
      clearTimeout(t);
      return timedOut;
    });
  } finally {
    clearTimeout(t);
    op.release();
  }
}

async function sendOwn(
  leases: LeaseManager,
  e: LeaseEntry,
  req: CallRequest,
  headers: string[],
  startedAt: number,
): Promise<Sent> {
  let res: WholeResponse;
  try {
    res = await upstreamRequest(e.address, {
      method: req.method,
      path: req.path,
      headers,
      body: req.body,
      answerTimeout: e.timeoutMs,
      headersTimeout: headersBackstopMs(e.timeoutMs),
      bodyTimeout: e.timeoutMs,
      maxResponseBytes: req.maxResponseBytes,
      signal: req.signal,
    });
  } catch (err) {
    if (err instanceof ResponseTooLarge) {
      // The function answered, with more than we keep: it ran, and would answer the same again.
      leases.release(e);
      throw new CallFailure("PAYLOAD_TOO_LARGE", err.message, false);
    }
    return failed(leases, e, err, req.signal);
  }
  return answered(leases, e, res.status, rawHeaders(res.raw), res.body, startedAt);
}

/** `headersDone` stops the timeout once the head is in, and says whether it had fired. */
async function sendOn(
  leases: LeaseManager,
  e: LeaseEntry,
  req: CallRequest,
  headers: string[],
  signal: AbortSignal,
  startedAt: number,
  headersDone: () => Error | undefined,
): Promise<Sent> {
  let res: Dispatcher.ResponseData;
  try {
    res = await e.pool.request({
      path: req.path,
      method: req.method,
      headers,
      body: req.body,
      headersTimeout: headersBackstopMs(e.timeoutMs),
      bodyTimeout: e.timeoutMs,
      signal,
    });
  } catch (err) {
    return failed(leases, e, headersDone() ?? err, req.signal);
  }
  headersDone();
  const status = res.statusCode;
  let body: Buffer;
  try {
    body = await readBody(res.body, req.maxResponseBytes);
  } catch (err) {
    if (err instanceof CallFailure) {
      // The function answered, with more than we keep: it ran, and would answer the same again.
      leases.release(e);
      throw err;
    }
    return failed(leases, e, err, req.signal);
  }
  return answered(leases, e, status, plainHeaders(res.headers), body, startedAt);
}
