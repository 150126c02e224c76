import { AsyncLocalStorage } from "node:async_hooks";
import { newSpanId, newTraceId } from "./ids";
import type { TraceContext } from "./traceparent";

/**
 * The next hop of a trace: a new span id in the parent's trace (flags and tracestate kept), or a new
 * trace when there is no parent. A new trace is not sampled unless the caller says so: with export
 * off nothing records it.
 */
export function childOf(parent: TraceContext | undefined, sampled = false): TraceContext {
  return parent === undefined
    ? { traceId: newTraceId(), spanId: newSpanId(), sampled, traceState: undefined }
    : {
        traceId: parent.traceId,
        spanId: newSpanId(),
        sampled: parent.sampled,
        traceState: parent.traceState,
      };
}

/** What a log line written while handling one request or call carries. */
export interface CallScope {
  readonly trace: TraceContext | undefined;
  readonly requestId: string | undefined;
}

/**
 * Request scope for the services whose handlers are async functions (scheduler, poolkeeper,
 * kubewatcher): every log line and NATS request made inside `fn` sees it. Not for the gateway's
 * warm path: entering AsyncLocalStorage turns on promise hooks for the whole process, so the
 * gateway passes its context explicitly and enters a scope only where one arrives over NATS.
 */
const storage = new AsyncLocalStorage<CallScope>();
let scopes = true;

/**
 * Off: `runInScope` only calls `fn`. The gateway turns scopes off at start (main.ts): a single
 * traced request to one of its NATS services (gateway.sync, gateway.stats) would otherwise enable
 * AsyncLocalStorage, and with it promise hooks on every proxied request, for the process's life.
 */
export function setRequestScopes(on: boolean): void {
  scopes = on;
}

export function runInScope<T>(scope: CallScope, fn: () => T): T {
  return scopes ? storage.run(scope, fn) : fn();
}

export function currentScope(): CallScope | undefined {
  return storage.getStore();
}

/**
 * Runs `fn` outside any request scope: for work a request sets off that outlives it (a pool
 * refill, an instance's output), whose log lines must not carry that request's trace forever.
 */
export function outsideScope<T>(fn: () => T): T {
  return storage.exit(fn);
}

export function logBindings(
  trace: TraceContext | undefined,
  requestId: string | undefined,
): { traceId?: string; requestId?: string } {
  const b: { traceId?: string; requestId?: string } = {};
  if (trace !== undefined) b.traceId = trace.traceId;
  if (requestId !== undefined) b.requestId = requestId;
  return b;
}
