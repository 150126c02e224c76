/**
 * Tracing: W3C `traceparent`/`tracestate` accepted or started at the edges and passed on over
 * HTTP and NATS headers; spans exported over OTLP only when configured (config.ts). See
 * docs/architecture.md "Traces".
 */
import type { Logger } from "../logger";
import { shownEndpoint, type TracingConfig } from "./config";
import { OFF_TRACER, setTracer, type Tracer } from "./tracer";

export * from "./traceparent";
export * from "./ids";
export * from "./scope";
export * from "./nats-headers";
export * from "./tracer";
export * from "./config";

/**
 * Installs the process's tracer: the OpenTelemetry one when `config` is set (the SDK is imported
 * only then), otherwise the off tracer. Returns it, so the caller can `shutdown()` (flush) on stop.
 */
export async function startTracing(
  config: TracingConfig | undefined,
  service: string,
  logger: Logger,
): Promise<Tracer> {
  if (config === undefined) {
    setTracer(OFF_TRACER);
    return OFF_TRACER;
  }
  const { createOtelTracer } = await import("./otel");
  const t = await createOtelTracer(config, service, logger);
  setTracer(t);
  logger.info(
    {
      endpoint: shownEndpoint(config.tracesUrl),
      sampler: config.sampler,
      serviceName: config.serviceName ?? `fizz-${service}`,
    },
    "exporting traces (OTLP/HTTP)",
  );
  return t;
}

/**
 * Flushes and stops `t` for at most `capMs`: an unreachable collector (each export waits for the
 * exporter's timeout) must not hold a stopping service until its drain deadline exits it with 1.
 * Never rejects; what could not be sent is said once.
 */
export async function stopTracing(t: Tracer, logger: Logger, capMs = 3000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const capped = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), capMs);
    timer.unref();
  });
  try {
    const r = await Promise.race([t.shutdown().then(() => "done" as const), capped]);
    if (r === "late") logger.warn({ afterMs: capMs }, "span export did not finish; spans dropped");
  } catch (err) {
    logger.warn({ err: (err as Error).message }, "span export failed");
  } finally {
    clearTimeout(timer);
  }
}
