import { randomUUID } from "node:crypto";
import type http from "node:http";
import { Codecs, FizzError, type CallStatus, type Invocation, type Subjects } from "@fizz/events";
import {
  childOf,
  OutboundRefused,
  parseTraceparent,
  publishInvocation,
  tracer,
  type Logger,
  type Span,
  type TraceContext,
  type NatsConnection,
  type OutboundGuard,
} from "@fizz/kit";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { BusMetrics } from "./bus-metrics";
import { scanRequestHeaders, sendError, DEFAULT_NAMESPACE } from "../front-door/index";
import { CallStore, TRUNCATED_HEADER } from "./invoker/status";

/**
 * Async invocation over HTTP, OpenFaaS compatible:
 * - `POST /async-function/<name>[.<ns>][/path][?query]` (any method but GET/HEAD): 404 when no
 *   such function, else the invocation is stored on FIZZ_INVOCATIONS (the JetStream ack awaited)
 *   and answered `202` with `X-Call-Id`. `X-Callback-Url` gets the result POSTed when done. A
 *   client may choose the call id (`X-Call-Id`): sending the same request again is then idempotent.
 * - `GET /async-function/<name>[.<ns>]/<call-id>`: the call's status as JSON, 404 when unknown
 *   or expired (FIZZ_CALL_RETENTION_MS).
 * The `/async-function/` path space is reserved (no trigger can take it), like `/function/`.
 */
export const ASYNC_ROOT = "/async-function/";
const CALL_ID = /^[A-Za-z0-9_=-]{1,128}$/;
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** Headers consumed here rather than passed to the function. */
const CONSUMED = new Set(["x-callback-url", "x-call-id"]);

export interface AsyncHttpOptions {
  nc: NatsConnection;
  subjects: Subjects;
  sender: string;
  /** JetStream and the status store; undefined until the bus is set up (503 meanwhile). */
  bus: () => { js: JetStreamClient; store: CallStore } | undefined;
  /** Whether the function exists (the in-memory route table); undefined while routes load. */
  exists: (namespace: string, name: string) => boolean | undefined;
  maxBodyBytes: number;
  /** Checks X-Callback-Url now; the invoker checks it again when it calls back. */
  outbound: OutboundGuard;
  metrics: BusMetrics;
  logger: Logger;
}

/** Longer callback URLs are refused (they travel in every invocation and status). */
const CALLBACK_URL_MAX = 2048;

export function createAsyncHandler(o: AsyncHttpOptions): http.RequestListener {
  const log = o.logger.child({ component: "async-http" });
  return (req, res) => {
    const requestId = randomUUID();
    const fail = (err: FizzError, outcome: string) => {
      o.metrics.asyncRequests.labels(outcome).inc();
      if (err.code === "INTERNAL") log.error({ err: err.message }, "async request failed");
      sendError(res, err, requestId, !req.complete);
    };
    // The client's trace (or a new one) continues through the invocation's NATS headers to the
    // invoker, whose call of the function is part of it.
    const incoming = parseTraceparent(header(req, "traceparent"), header(req, "tracestate"));
    const t = tracer();
    const span = t.recording
      ? t.startSpan("gateway.request", "server", incoming, {
          "http.request.method": req.method ?? "GET",
          "url.path": (req.url ?? "/").split("?")[0] ?? "/",
          "fizz.request_id": requestId,
        })
      : undefined;
    const trace = span?.context ?? childOf(incoming);
    if (span !== undefined) res.once("finish", () => endServerSpan(span, res.statusCode));
    handle(o, req, res, requestId, trace).catch((err: unknown) => {
      const fe = FizzError.from(err);
      fail(
        fe,
        fe.code === "NOT_FOUND" || fe.code === "NO_ROUTE"
          ? "not_found"
          : fe.status >= 500
            ? "unavailable"
            : "refused",
      );
    });
  };
}

async function handle(
  o: AsyncHttpOptions,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  requestId: string,
  trace: TraceContext,
): Promise<void> {
  const url = req.url ?? "/";
  const method = req.method ?? "GET";
  // <name>[.<ns>] up to the next '/' or '?'; the rest is what the function sees.
  let end = ASYNC_ROOT.length;
  while (end < url.length && url[end] !== "/" && url[end] !== "?") end++;
  const target = url.slice(ASYNC_ROOT.length, end);
  const dot = target.indexOf(".");
  const name = dot < 0 ? target : target.slice(0, dot);
  const namespace = dot < 0 ? DEFAULT_NAMESPACE : target.slice(dot + 1);
  const rest = url.slice(end);
  const exists = o.exists(namespace, name);
  if (exists === undefined)
    throw new FizzError("UNAVAILABLE", "the gateway is still loading its routes");
  if (!exists)
    throw new FizzError(
      "NO_ROUTE",
      `no function ${name} in namespace ${namespace} for ${method} ${url.split("?")[0]}`,
    );

  if (method === "GET" || method === "HEAD")
    return status(o, res, namespace, name, rest, requestId);

  const bus = o.bus();
  if (!bus)
    throw new FizzError("UNAVAILABLE", "the invocation queue (JetStream) is not reachable yet");
  const scanned = scanRequestHeaders(req.rawHeaders);
  const callbackUrl = header(req, "x-callback-url");
  if (callbackUrl !== undefined) await checkCallbackUrl(o.outbound, callbackUrl);
  const askedId = header(req, "x-call-id");
  if (askedId !== undefined && !CALL_ID.test(askedId)) {
    throw new FizzError(
      "VALIDATION_FAILED",
      "x-call-id: must be 1-128 letters, digits, '_', '-' or '='",
      { field: "x-call-id" },
    );
  }
  const body = await readBody(req, scanned.contentLength, o.maxBodyBytes);
  const headers: Record<string, string> = {};
  const h = scanned.headers;
  for (let i = 0; i + 1 < h.length; i += 2) {
    const n = (h[i] as string).toLowerCase();
    if (CONSUMED.has(n) || n === "content-length") continue;
    headers[n] = headers[n] === undefined ? (h[i + 1] as string) : `${headers[n]}, ${h[i + 1]}`;
  }
  headers["x-request-id"] = scanned.requestId ?? requestId;
  const callId = askedId ?? randomUUID();
  const now = Date.now();
  const inv: Invocation = {
    callId,
    namespace,
    function: name,
    source: "async",
    method,
    path: rest.length === 0 || rest.startsWith("?") ? `/${rest}` : rest,
    headers,
    body: body.toString("base64"),
    ...(callbackUrl !== undefined ? { callbackUrl } : {}),
    maxRetries: 3,
    createdAt: now,
  };
  const encoded = Codecs.invoke.encode(inv, o.sender).length;
  const maxPayload = o.nc.info?.max_payload ?? 1024 * 1024;
  if (encoded > maxPayload) {
    throw new FizzError(
      "PAYLOAD_TOO_LARGE",
      `the invocation (${encoded} bytes with the body base64-encoded) exceeds what NATS carries (max_payload ${maxPayload})`,
      { field: "body" },
    );
  }
  // Queued first: the invoker may write `running` before the publish's ack is back here.
  const queued: CallStatus = {
    callId,
    namespace,
    function: name,
    state: "queued",
    attempts: 0,
    createdAt: now,
    updatedAt: now,
  };
  const existing = await bus.store.create(queued);
  if (existing && (existing.namespace !== namespace || existing.function !== name)) {
    throw new FizzError("ALREADY_EXISTS", `call id ${callId} is taken`, { field: "x-call-id" });
  }
  // A call already past `queued` was published; `queued` may be a publish that failed: publish
  // again (the stream drops a duplicate within its window, the call id being the message id).
  if (!existing || existing.state === "queued") {
    try {
      await publishInvocation(
        bus.js,
        o.subjects,
        existing ? { ...inv, createdAt: existing.createdAt } : inv,
        o.sender,
        trace,
      );
    } catch (err) {
      if (!existing) await bus.store.remove(callId).catch(() => undefined);
      throw new FizzError(
        "UNAVAILABLE",
        `the invocation could not be queued: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  o.metrics.asyncRequests.labels("accepted").inc();
  const text = JSON.stringify({ callId });
  res.writeHead(202, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "x-call-id": callId,
    "x-request-id": headers["x-request-id"],
  });
  res.end(text);
}

async function status(
  o: AsyncHttpOptions,
  res: http.ServerResponse,
  namespace: string,
  name: string,
  rest: string,
  requestId: string,
): Promise<void> {
  const callId = rest.split("?")[0]?.slice(1) ?? "";
  if (callId.length === 0) {
    throw new FizzError(
      "VALIDATION_FAILED",
      "GET /async-function/<name>/<call-id> reads a call's status; invoke with POST",
      { field: "call-id" },
    );
  }
  const bus = o.bus();
  if (!bus)
    throw new FizzError("UNAVAILABLE", "the call status store (JetStream) is not reachable yet");
  const s = CALL_ID.test(callId) ? await bus.store.get(callId) : undefined;
  if (!s || s.namespace !== namespace || s.function !== name) {
    throw new FizzError(
      "NOT_FOUND",
      `no call ${callId} of function ${name} in namespace ${namespace} (unknown or expired)`,
    );
  }
  o.metrics.asyncRequests.labels("status").inc();
  const text = JSON.stringify(statusView(s));
  res.writeHead(200, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "x-request-id": requestId,
  });
  res.end(text);
}

/** The status as clients see it: the body as text when it is UTF-8, else base64 (flagged). */
export function statusView(s: CallStatus): Record<string, unknown> {
  const view: Record<string, unknown> = {
    callId: s.callId,
    namespace: s.namespace,
    function: s.function,
    state: s.state,
  };
  if (s.status !== undefined) view.status = s.status;
  if (s.headers !== undefined) {
    const { [TRUNCATED_HEADER]: truncated, ...headers } = s.headers;
    view.headers = headers;
    if (truncated !== undefined) view.truncatedFrom = Number(truncated);
  }
  if (s.body !== undefined) {
    try {
      view.body = UTF8.decode(Buffer.from(s.body, "base64"));
    } catch {
      view.body = s.body;
      view.bodyEncoding = "base64";
    }
  }
  if (s.error !== undefined) view.error = s.error;
  if (s.callbackError !== undefined) view.callbackError = s.callbackError;
  view.attempts = s.attempts;
  view.createdAt = s.createdAt;
  view.updatedAt = s.updatedAt;
  return view;
}

/**
 * A callback URL must be an absolute http(s) URL whose host is not internal (loopback, private,
 * link-local, the platform's own endpoints), unless FIZZ_OUTBOUND_ALLOW opens it: otherwise any
 * caller of a function could make the gateway POST to the registry or NATS with the function's
 * answer as the body.
 */
async function checkCallbackUrl(guard: OutboundGuard, url: string): Promise<void> {
  if (url.length > CALLBACK_URL_MAX || !/^https?:\/\/[^\s]+$/i.test(url)) {
    throw new FizzError(
      "VALIDATION_FAILED",
      `x-callback-url: must be an http(s) URL of at most ${CALLBACK_URL_MAX} characters`,
      { field: "x-callback-url" },
    );
  }
  try {
    await guard.check(url);
  } catch (err) {
    if (!(err instanceof OutboundRefused)) throw err;
    throw new FizzError("OUTBOUND_REFUSED", `x-callback-url: refused: ${err.message}`, {
      field: "x-callback-url",
    });
  }
}

function endServerSpan(span: Span, status: number): void {
  span.setAttribute("http.response.status_code", status);
  if (status >= 500) span.fail(`answered ${status}`);
  span.end();
}

/** A repeated header reads as its first value; node joins a repeated traceparent (invalid then). */
function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function readBody(
  req: http.IncomingMessage,
  contentLength: number,
  limit: number,
): Promise<Buffer> {
  if (Number.isNaN(contentLength)) {
    return Promise.reject(
      new FizzError("VALIDATION_FAILED", "content-length: must be a non-negative integer", {
        field: "content-length",
      }),
    );
  }
  if (contentLength > limit) {
    return Promise.reject(
      new FizzError(
        "PAYLOAD_TOO_LARGE",
        `request body of ${contentLength} bytes exceeds ${limit}`,
        { field: "body" },
      ),
    );
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on("data", (c: Buffer) => {
      n += c.length;
      if (n > limit) {
        req.pause();
        reject(
          new FizzError("PAYLOAD_TOO_LARGE", `request body exceeds ${limit} bytes`, {
            field: "body",
          }),
        );
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks, n)));
    req.on("error", (err) => reject(FizzError.from(err, "VALIDATION_FAILED")));
  });
}
