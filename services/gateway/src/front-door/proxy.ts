import type { IncomingMessage, ServerResponse } from "node:http";
import { FizzError } from "@fizz/events";
import { formatTraceparent, tracer, type Span, type TraceContext } from "@fizz/kit";
import type { Dispatcher } from "undici";
import type { BodySource } from "./body";
import { answerTimeout, headersBackstopMs, leaseError } from "./http-errors";
import type { FunctionLeases, LeaseEntry } from "./leases";
import { ProxyAnswer, type ProxyContext } from "./proxy-answer";
import { upstreamClient, upstreamClientAvailable, type UpstreamHandler } from "./upstream-client";
import { errorCodeOf, isInstanceFault, upstreamAnswer } from "./upstream-errors";
import type { WaitTicket } from "./wait-queue";

export type { ProxyContext } from "./proxy-answer";

const STREAM = 0;
const DISCARD = 1;
const INSPECT = 2;
/** A 503/429 body larger than this is the function's own answer, not the runtime's: stream it. */
const INSPECT_LIMIT = 16 * 1024;
const CLIENT_GONE = new Error("client went away");

const REPEATABLE = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * Listeners shared by every call (EventEmitter calls them with the response as `this`), so a
 * request does not allocate closures for them.
 */
const kCall = Symbol("fizz.proxyCall");
type TaggedResponse = ServerResponse & { [kCall]?: ProxyCall };
function onResponseClose(this: TaggedResponse): void {
  this[kCall]?.clientClosed();
}
function onResponseDrain(this: TaggedResponse): void {
  this[kCall]?.drained();
}

/**
 * One proxied request: lease → dispatch (upstream-client.ts, or undici for a chunked body or https)
 * → response streamed back as it arrives. The call object is itself the handler of either (no
 * closures, no intermediate streams on the response path; `onData` writes straight to the client,
 * and the client's backpressure pauses the upstream).
 *
 * Retries, at most one per request, only where the function did not run or running it again is
 * harmless: the connection failed before the request was written, the instance answered 421
 * (misdirected) or 503 NOT_SPECIALIZED, it answered 429 INSTANCE_BUSY (another instance), or it
 * failed after the request was sent and the request is a bodiless GET/HEAD/OPTIONS.
 */
export class ProxyCall extends ProxyAnswer implements Dispatcher.DispatchHandler, UpstreamHandler {
  private readonly baseLength: number;
  private readonly repeatable: boolean;
  private retried = false;
  private lease: LeaseEntry | undefined;
  /** Set while the request waits for a slot at the function's capacity limit. */
  private ticket: WaitTicket | undefined;
  /** A 429 INSTANCE_BUSY kept to pass on if no other instance can take the retry. */
  private busy: { status: number; raw: (Buffer | string)[]; body: Buffer } | undefined;
  // Per attempt.
  private abortUpstream: ((err?: Error) => void) | undefined;
  private connected = false;
  private mode = STREAM;
  private status = 0;
  private raw: (Buffer | string)[] | undefined;
  private held: Buffer[] | undefined;
  private heldBytes = 0;
  private resume: (() => void) | undefined;
  /** The body came whole with its head (one end()). */
  private ended = false;
  /** The function's timeout to its response head, on a precise timer (see send). */
  private answerTimer: NodeJS.Timeout | undefined;
  private timedOut = false;

  constructor(
    ctx: ProxyContext,
    req: IncomingMessage,
    res: ServerResponse,
    target: FunctionLeases,
    /** Path and query the function sees. */
    private readonly url: string,
    requestId: string,
    /** Forwarded request headers; attempt-specific ones are appended past `baseLength`. */
    private readonly headers: string[],
    body: BodySource | null,
    startedAt: number,
    trace: TraceContext,
    span: Span | undefined,
  ) {
    super(ctx, req, res, target, requestId, body, startedAt, trace, span);
    this.baseLength = headers.length;
    this.repeatable = body === null && REPEATABLE.has(req.method ?? "GET");
  }

  start(): void {
    this.ctx.active.count++;
    (this.res as TaggedResponse)[kCall] = this;
    this.res.on("close", onResponseClose);
    this.acquire(undefined);
  }

  private acquire(avoid: string | undefined): void {
    const e = this.ctx.leases.tryTake(this.target, avoid);
    if (e) {
      this.send(e);
      return;
    }
    this.ticket ??= {};
    this.ctx.leases.acquire(this.target, avoid, this.ticket, this.trace).then(
      (lease) => {
        if (this.clientGone) {
          this.ctx.leases.release(lease, false);
          this.done(499);
        } else if (lease.dropped || lease.revision < this.target.minRevision) {
          // Handed over from the queue and dropped (failed, old revision) before this ran.
          this.ctx.leases.release(lease, false);
          this.acquire(avoid);
        } else {
          this.send(lease);
        }
      },
      (err: unknown) => {
        if (this.clientGone) return this.done(499);
        const fe = leaseError(err);
        // No other instance for a retried 429: the client gets the instance's own 429.
        if (
          this.busy &&
          (fe.code === "NO_CAPACITY" || fe.code === "TIMEOUT" || fe.code === "UNAVAILABLE")
        ) {
          this.passBuffered(this.busy.status, this.busy.raw, this.busy.body);
        } else {
          this.fail(fe);
        }
      },
    );
  }

  private send(e: LeaseEntry): void {
    this.lease = e;
    this.abortUpstream = undefined;
    this.connected = false;
    this.mode = STREAM;
    this.raw = undefined;
    this.held = undefined;
    this.whole = -1;
    this.ended = false;
    const h = this.headers;
    h.length = this.baseLength;
    h.push("x-fizz-instance", e.instanceId, "x-fizz-function-revision", e.revisionText);
    if (this.span !== undefined) {
      // Recording: each attempt is a client span, the function's parent.
      const cs = tracer().startSpan("gateway.call", "client", this.trace, {
        "fizz.instance": e.instanceId,
        "server.address": e.address,
      });
      this.callSpan = cs;
      h.push("traceparent", formatTraceparent(cs.context));
      if (cs.context.traceState !== undefined) h.push("tracestate", cs.context.traceState);
    }
    this.clearAnswerTimer();
    this.timedOut = false;
    const body = this.body;
    if (
      upstreamClientAvailable &&
      (body === null || body.length >= 0) &&
      e.address.startsWith("http:")
    ) {
      // Bodiless requests and bodies of a known length, nearly every request: the lighter client
      // (upstream-client.ts), which keeps the function's timeout itself, exact, without a timer
      // per request. Plain HTTP only: an https instance address stays with undici's TLS, and a
      // chunked body with undici, which frames it.
      upstreamClient(e.address).dispatch(
        {
          path: this.url,
          method: this.req.method ?? "GET",
          headers: h,
          answerTimeout: e.timeoutMs,
          headersTimeout: headersBackstopMs(e.timeoutMs),
          bodyTimeout: e.timeoutMs,
          ...(body === null ? {} : { body: body.whole() ?? body.open(), bodyLength: body.length }),
        },
        this,
      );
      return;
    }
    // undici's own timeouts above 1 s run on a coarse ~0.5 s tick, so a 504 came up to a second
    // after the function's timeout; this timer is exact, and undici's is only a backstop.
    if (e.timeoutMs > 0) {
      this.answerTimer = setTimeout(() => {
        this.answerTimer = undefined;
        this.timedOut = true;
        this.abortUpstream?.(answerTimeout());
      }, e.timeoutMs);
    }
    e.pool.dispatch(
      {
        path: this.url,
        method: this.req.method ?? "GET",
        headers: h,
        body: body ? body.open() : null,
        headersTimeout: headersBackstopMs(e.timeoutMs),
        bodyTimeout: e.timeoutMs,
      },
      this,
    );
  }

  protected clearAnswerTimer(): void {
    if (this.answerTimer !== undefined) clearTimeout(this.answerTimer);
    this.answerTimer = undefined;
  }

  // undici handler ------------------------------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    if (this.clientGone) {
      abort(CLIENT_GONE);
      return;
    }
    if (this.timedOut) {
      abort(answerTimeout());
      return;
    }
    this.abortUpstream = abort;
    this.connected = true;
  }

  onHeaders(status: number, raw: (Buffer | string)[], resume: () => void): boolean {
    if (status < 200) return true; // 1xx (103 Early Hints): wait for the final answer
    this.clearAnswerTimer();
    this.callSpan?.setAttribute("http.response.status_code", status);
    this.status = status;
    this.resume = resume;
    if (status === 421) {
      this.mode = DISCARD;
    } else if ((status === 503 || status === 429) && !this.retried) {
      this.mode = INSPECT;
      this.raw = raw;
      this.held = [];
      this.heldBytes = 0;
    } else {
      this.mode = STREAM;
      this.writeHead(status, raw);
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.mode === STREAM) {
      if (chunk.length === this.whole) {
        // The whole body in one chunk (most answers): head and body go out in one end().
        this.whole = -1;
        this.ended = true;
        this.res.end(chunk);
        return true;
      }
      this.whole = -1;
      if (this.res.write(chunk)) return true;
      this.res.once("drain", onResponseDrain);
      return false;
    }
    if (this.mode === INSPECT) {
      const held = this.held as Buffer[];
      held.push(chunk);
      this.heldBytes += chunk.length;
      if (this.heldBytes > INSPECT_LIMIT) {
        this.mode = STREAM;
        this.writeHead(this.status, this.raw as (Buffer | string)[]);
        this.whole = -1;
        for (const c of held) this.res.write(c);
        this.held = undefined;
      }
    }
    return true;
  }

  onComplete(): void {
    this.clearAnswerTimer();
    this.endCallSpan(undefined);
    const e = this.lease as LeaseEntry;
    this.abortUpstream = undefined;
    if (this.mode === STREAM) {
      this.ctx.leases.release(e);
      if (!this.ended) this.res.end();
      this.done(this.status);
      return;
    }
    // A lease is dropped before its slot is given back: a freed slot goes straight to a waiting
    // request, which must not get the instance that just failed.
    if (this.mode === DISCARD) {
      this.ctx.leases.drop(e, true);
      this.ctx.leases.release(e);
      this.retryNotRun(
        "misdirected",
        undefined,
        "instance refused the request as misdirected (421)",
      );
      return;
    }
    const body =
      this.held && this.held.length === 1
        ? (this.held[0] as Buffer)
        : Buffer.concat(this.held ?? []);
    const code = errorCodeOf(body);
    if (this.status === 503 && code === "NOT_SPECIALIZED") {
      this.ctx.leases.drop(e, true);
      this.ctx.leases.release(e);
      this.retryNotRun("not_specialized", undefined, "instance is not specialized (503)");
      return;
    }
    this.ctx.leases.release(e);
    if (this.status === 429 && code === "INSTANCE_BUSY") {
      this.busy = { status: this.status, raw: this.raw as (Buffer | string)[], body };
      if (this.canRetry()) this.retry("busy", e.instanceId);
      else this.passBuffered(this.status, this.busy.raw, body);
    } else {
      this.passBuffered(this.status, this.raw as (Buffer | string)[], body);
    }
  }

  onError(err: Error): void {
    this.clearAnswerTimer();
    this.endCallSpan(err.message);
    const e = this.lease;
    this.abortUpstream = undefined;
    const code = (err as Error & { code?: string }).code;
    // The function's time ran out while the client was still sending the body (the gateway was
    // waiting for the client's bytes, not for the instance to read them): the client's fault.
    const uploading =
      !this.res.headersSent &&
      (code === "UND_ERR_HEADERS_TIMEOUT" || this.timedOut) &&
      this.body?.waitingForClient === true;
    const clientFault =
      this.clientGone || this.body?.clientFailed || this.body?.tooLarge || uploading;
    if (e) {
      // The instance's fault: its lease goes before its slot is given back, so the slot is not
      // handed to a waiting request.
      if (!clientFault && isInstanceFault(this.res.headersSent, code))
        this.ctx.leases.drop(e, true);
      this.ctx.leases.release(e);
    }
    if (this.clientGone || this.body?.clientFailed) {
      this.clientGone = true;
      this.res.destroy();
      this.done(499);
      return;
    }
    if (this.body?.tooLarge) {
      this.fail(new FizzError("PAYLOAD_TOO_LARGE", err.message, { field: "body" }), true);
      return;
    }
    if (uploading) {
      const ms = e?.timeoutMs ?? 0;
      this.fail(
        new FizzError(
          "REQUEST_TIMEOUT",
          `the request body was still arriving when function ${this.target.name}'s timeout of ${ms} ms passed`,
          { field: "body", retryable: false },
        ),
        true,
      );
      return;
    }
    if (this.res.headersSent) {
      // Mid-stream: the client already has a status; all we can do is cut the response.
      this.logger().debug(
        { err: err.message, fn: this.target.key },
        "upstream failed mid-response",
      );
      this.res.destroy();
      this.done(502);
      return;
    }
    // A hung instance (dropped above, and named in the next lease request, so the scheduler kills
    // and replaces it) or a request that cannot be forwarded: answered, not retried.
    const answer = upstreamAnswer(code, err.message, this.target.name, e?.timeoutMs ?? 0);
    if (answer) {
      this.fail(answer);
      return;
    }
    if (!this.connected) {
      this.retryNotRun("unreachable", undefined, `instance unreachable: ${err.message}`);
    } else if (this.repeatable && !this.retried) {
      this.retry("failed", undefined);
    } else {
      this.fail(new FizzError("INSTANCE_FAILED", `instance failed: ${err.message}`));
    }
  }

  // ---------------------------------------------------------------------------------------------

  drained(): void {
    this.resume?.();
  }

  /** The client connection closed: after our answer (nothing to do) or before it (abort upstream). */
  clientClosed(): void {
    this.ctx.active.count--;
    if (this.finished || this.res.writableFinished) return;
    this.clientGone = true;
    this.body?.close();
    this.abortUpstream?.(CLIENT_GONE);
    // A request waiting for a slot leaves the queue (its promise settles as a 499).
    this.ticket?.cancel?.();
  }

  private canRetry(): boolean {
    return !this.retried && !this.clientGone && (this.body === null || this.body.replayable);
  }

  private retry(reason: string, avoid: string | undefined): void {
    this.retried = true;
    this.ctx.metrics.retries.labels(reason).inc();
    this.acquire(avoid);
  }

  /** The function did not run: try once more elsewhere if the body can be sent again. */
  private retryNotRun(reason: string, avoid: string | undefined, message: string): void {
    if (this.canRetry()) this.retry(reason, avoid);
    else this.fail(new FizzError("INSTANCE_FAILED", message));
  }
}
