import type * as Api from "@opentelemetry/api";
import type { TracingConfig } from "./config";
import type { Span, SpanAttributes, SpanKind, Tracer } from "./tracer";
import type { TraceContext } from "./traceparent";

/**
 * The OpenTelemetry tracer: the official SDK (BasicTracerProvider, BatchSpanProcessor) exporting
 * OTLP/HTTP (JSON) to the configured collector. Loaded with dynamic imports by `startTracing` only
 * when export is configured, so a platform without a collector never loads the SDK. Parents cross
 * process boundaries as our own TraceContext, handed to the SDK as a remote span context: no
 * global context manager or propagator is registered (nothing else in the process is touched).
 */
export async function createOtelTracer(config: TracingConfig, service: string): Promise<Tracer> {
  const [api, sdk, exporterMod, resources, semconv] = await Promise.all([
    import("@opentelemetry/api"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/semantic-conventions"),
  ]);
  const ratio = new sdk.TraceIdRatioBasedSampler(config.ratio);
  const sampler: Api.Sampler | undefined = {
    always_on: new sdk.AlwaysOnSampler(),
    always_off: new sdk.AlwaysOffSampler(),
    traceidratio: ratio,
    parentbased_always_on: new sdk.ParentBasedSampler({ root: new sdk.AlwaysOnSampler() }),
    parentbased_always_off: new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() }),
    parentbased_traceidratio: new sdk.ParentBasedSampler({ root: ratio }),
  }[config.sampler];
  const exporter = new exporterMod.OTLPTraceExporter({ url: config.tracesUrl });
  const provider = new sdk.BasicTracerProvider({
    resource: resources.resourceFromAttributes({
      [semconv.ATTR_SERVICE_NAME]: config.serviceName ?? `fizz-${service}`,
    }),
    sampler,
    spanProcessors: [new sdk.BatchSpanProcessor(exporter)],
  });
  const kinds: Record<SpanKind, Api.SpanKind> = {
    server: api.SpanKind.SERVER,
    client: api.SpanKind.CLIENT,
    producer: api.SpanKind.PRODUCER,
    consumer: api.SpanKind.CONSUMER,
    internal: api.SpanKind.INTERNAL,
  };
  return new OtelTracer(api, provider.getTracer("fizz"), kinds, () => provider.shutdown());
}

class OtelTracer implements Tracer {
  readonly recording = true;

  constructor(
    private readonly api: typeof Api,
    private readonly tracer: Api.Tracer,
    private readonly kinds: Record<SpanKind, Api.SpanKind>,
    readonly shutdown: () => Promise<void>,
  ) {}

  startSpan(
    name: string,
    kind: SpanKind,
    parent: TraceContext | undefined,
    attributes?: SpanAttributes,
  ): Span {
    const { api } = this;
    const ctx =
      parent === undefined
        ? api.ROOT_CONTEXT
        : api.trace.setSpanContext(api.ROOT_CONTEXT, {
            traceId: parent.traceId,
            spanId: parent.spanId,
            traceFlags: parent.sampled ? api.TraceFlags.SAMPLED : api.TraceFlags.NONE,
            isRemote: true,
            ...(parent.traceState !== undefined
              ? { traceState: api.createTraceState(parent.traceState) }
              : {}),
          });
    const span = this.tracer.startSpan(
      name,
      { kind: this.kinds[kind], ...(attributes ? { attributes } : {}) },
      ctx,
    );
    const sc = span.spanContext();
    return new OtelSpan(api, span, {
      traceId: sc.traceId,
      spanId: sc.spanId,
      sampled: (sc.traceFlags & api.TraceFlags.SAMPLED) !== 0,
      // Carried as received: the SDK's re-serialisation could reorder or drop what it does not parse.
      traceState: parent?.traceState,
    });
  }
}

class OtelSpan implements Span {
  constructor(
    private readonly api: typeof Api,
    private readonly span: Api.Span,
    readonly context: TraceContext,
  ) {}

  setAttribute(key: string, value: string | number | boolean): void {
    this.span.setAttribute(key, value);
  }

  fail(message: string): void {
    this.span.setStatus({ code: this.api.SpanStatusCode.ERROR, message });
  }

  end(): void {
    this.span.end();
  }
}
