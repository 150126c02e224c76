import { childOf } from "./scope";
import type { TraceContext } from "./traceparent";

export type SpanKind = "server" | "client" | "producer" | "consumer" | "internal";
export type SpanAttributes = Record<string, string | number | boolean>;

/** A span of work; `context` is what the next hop gets as its parent. */
export interface Span {
  readonly context: TraceContext;
  setAttribute(key: string, value: string | number | boolean): void;
  /** Marks the span failed with a message (an error, a 5xx). */
  fail(message: string): void;
  end(): void;
}

/**
 * Starts spans. Off (the default) it records nothing: a span is just a fresh span id in the
 * parent's trace, so propagation works the same with and without export. With
 * OTEL_EXPORTER_OTLP_ENDPOINT set, `startTracing` installs the OpenTelemetry one (otel.ts).
 */
export interface Tracer {
  /** False when spans go nowhere: hot paths skip building span names and attributes. */
  readonly recording: boolean;
  startSpan(
    name: string,
    kind: SpanKind,
    parent: TraceContext | undefined,
    attributes?: SpanAttributes,
  ): Span;
  /** Exports what is buffered and stops (the service stops). */
  shutdown(): Promise<void>;
}

class OffSpan implements Span {
  constructor(readonly context: TraceContext) {}
  setAttribute(): void {}
  fail(): void {}
  end(): void {}
}

export const OFF_TRACER: Tracer = {
  recording: false,
  startSpan: (_name, _kind, parent) => new OffSpan(childOf(parent)),
  shutdown: () => Promise.resolve(),
};

/**
 * One tracer per process, like the logger's root: set once by main.ts (through runService) before
 * the service starts, read where spans begin. Tests that start services in-process keep OFF_TRACER.
 */
let current: Tracer = OFF_TRACER;

export function tracer(): Tracer {
  return current;
}

export function setTracer(t: Tracer): void {
  current = t;
}
