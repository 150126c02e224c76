import type { IncomingMessage, ServerResponse } from "node:http";
import type { FizzError } from "@fizz/events";
import { logBindings, type Logger, type Span, type TraceContext } from "@fizz/kit";
import type { BodySource } from "./body";
import { sendError } from "./http-errors";
import type { FunctionLeases, LeaseManager } from "./leases";
import type { GatewayMetrics } from "./metrics";
import { LINGER_MS } from "./linger";
import { writeResponseHead } from "./response-head";

export interface ProxyContext {
  leases: LeaseManager;
  metrics: GatewayMetrics;
  logger: Logger;
  /** Requests being proxied, for the graceful drain. */
  active: { count: number };
}

/**
 * The client's side of one proxied request (ProxyCall in proxy.ts holds leasing, dispatch and
 * retries): the instance's head passed on, error answers, and what is recorded once the request
 * is answered (metrics, spans, its log lines).
 */
export abstract class ProxyAnswer {
  /** The client got its answer (or is gone); metrics recorded. */
  protected finished = false;
  protected clientGone = false;
  /** The body's length while its first chunk is awaited, else -1. */
  protected whole = -1;
  /** The attempt's client span, only while recording. */
  protected callSpan: Span | undefined;
  /** Built at the first log line of this request, never otherwise. */
  private log: Logger | undefined;

  constructor(
    protected readonly ctx: ProxyContext,
    protected readonly req: IncomingMessage,
    protected readonly res: ServerResponse,
    protected readonly target: FunctionLeases,
    protected readonly requestId: string,
    protected readonly body: BodySource | null,
    protected readonly startedAt: number,
    /** The gateway's span context: parent of lease requests and of the function call. */
    protected readonly trace: TraceContext,
    /** The request's server span, only while recording (server.ts). */
    protected readonly span: Span | undefined,
  ) {}

  protected abstract clearAnswerTimer(): void;

  protected writeHead(status: number, raw: readonly (Buffer | string)[]): void {
    this.whole = writeResponseHead(this.res, this.req.method, this.requestId, status, raw);
  }

  protected passBuffered(status: number, raw: readonly (Buffer | string)[], body: Buffer): void {
    this.writeHead(status, raw);
    this.res.end(body);
    this.done(status);
  }

  protected fail(err: FizzError, close = false): void {
    this.body?.close();
    // Answering before the client finished sending: close rather than drain an unwanted body,
    // lingering so that the answer is not lost to a reset.
    const closing = close || (this.body !== null && !this.req.complete);
    const status = sendError(this.res, err, this.requestId, closing);
    if (closing) this.body?.linger(LINGER_MS);
    if (err.code === "INTERNAL")
      this.logger().error({ err: err.message, fn: this.target.key }, "proxy failed");
    this.done(status);
  }

  protected done(status: number): void {
    this.clearAnswerTimer();
    if (this.finished) return;
    this.finished = true;
    this.body?.dropRest();
    this.endCallSpan(this.clientGone ? "client went away" : undefined);
    if (this.span !== undefined) {
      this.span.setAttribute("http.response.status_code", status);
      if (status >= 500) this.span.fail(`answered ${status}`);
      this.span.end();
    }
    this.ctx.metrics.observe(this.target, status, this.startedAt);
  }

  protected endCallSpan(error: string | undefined): void {
    const cs = this.callSpan;
    if (cs === undefined) return;
    this.callSpan = undefined;
    if (error !== undefined) cs.fail(error);
    cs.end();
  }

  /** The request's logger: its lines carry the trace id and request id. */
  protected logger(): Logger {
    return (this.log ??= this.ctx.logger.child(logBindings(this.trace, this.requestId)));
  }
}
