import type * as Api from "@opentelemetry/api";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";
import type { Logger } from "../logger";
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
export async function createOtelTracer(
  config: TracingConfig,
  service: string,
  logger: Logger,
): Promise<Tracer> {
  const [api, sdk, exporterMod, resources, semconv] = await Promise.all([
    import("@opentelemetry/api").then((m) => exportsOf(m, "SpanKind")),
    import("@opentelemetry/sdk-trace-base").then((m) => exportsOf(m, "BasicTracerProvider")),
    import("@opentelemetry/exporter-trace-otlp-http").then((m) =>
      exportsOf(m, "OTLPTraceExporter"),
    ),
    import("@opentelemetry/resources").then((m) => exportsOf(m, "resourceFromAttributes")),
    import("@opentelemetry/semantic-conventions").then((m) => exportsOf(m, "ATTR_SERVICE_NAME")),
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
  const exporter = reportingFailures(
    new exporterMod.OTLPTraceExporter({ url: config.tracesUrl }),
    logger,
  );
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

/**
 * A CommonJS package's exports through a dynamic import: Node's loader names them on the module
 * namespace, but in the services' bundles (esbuild, code splitting) a CommonJS chunk exports only
 * `default`, the `module.exports` object. `probe` is an export the package must have.
 */
function exportsOf<T extends object>(ns: T, probe: keyof T): T {
  if (probe in ns) return ns;
  const fallback = (ns as { default?: unknown }).default;
  if (typeof fallback === "object" && fallback !== null && probe in fallback) return fallback as T;
  throw new Error(`OpenTelemetry module without ${String(probe)}`);
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

/** At most one warning per this long about failed exports: a dead collector fails every batch. */
const FAILURE_LOG_MS = 60_000;

/**
 * The exporter with failed exports said in the service's log (the SDK only hands them to its
 * global diagnostics, silent unless a process-wide logger is installed, which we do not): the
 * error's message only, never the endpoint or the OTEL_EXPORTER_OTLP_HEADERS sent to it.
 */
export function reportingFailures(inner: SpanExporter, logger: Logger): SpanExporter {
  let loggedAt = Number.NEGATIVE_INFINITY;
  let failed = 0;
  return {
    export(spans, done) {
      inner.export(spans, (result) => {
        // 0 is ExportResultCode.SUCCESS (its enum lives in @opentelemetry/core, not a dependency).
        if ((result.code as number) !== 0) {
          failed += spans.length;
          const now = performance.now();
          if (now - loggedAt >= FAILURE_LOG_MS) {
            loggedAt = now;
            logger.warn(
              { err: result.error?.message ?? "unknown error", spansLost: failed },
              "span export failed",
            );
            failed = 0;
          }
        }
        done(result);
      });
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
  };
}
