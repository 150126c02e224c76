/**
 * What tracing costs the gateway's warm path with export off (no OTEL_EXPORTER_OTLP_ENDPOINT):
 * exactly the steps server.ts runs per proxied request — read the client's traceparent (or none),
 * check the tracer, make the gateway's span id, write the traceparent header — in a tight loop.
 * `npx tsx bench/tracing-off-path.ts`; prints CPU ns per request for both cases.
 */
import { childOf, formatTraceparent, parseTraceparent, tracer } from "@fizz/kit";

const CLIENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const N = 2_000_000;

function offPath(traceparent: string | undefined, h: string[]): number {
  const incoming = parseTraceparent(traceparent, undefined);
  const t = tracer();
  const span = t.recording ? t.startSpan("gateway.request", "server", incoming) : undefined;
  const trace = span === undefined ? childOf(incoming) : span.context;
  if (span === undefined) {
    h.push("traceparent", formatTraceparent(trace));
    if (trace.traceState !== undefined) h.push("tracestate", trace.traceState);
  }
  return h.length;
}

function measure(label: string, traceparent: string | undefined): void {
  const h: string[] = [];
  let sink = 0;
  for (let i = 0; i < N / 10; i++) {
    h.length = 0;
    sink += offPath(traceparent, h);
  }
  // CPU time, not wall time: on a shared, loaded machine wall time mostly measures the others.
  const start = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    h.length = 0;
    sink += offPath(traceparent, h);
  }
  const used = process.cpuUsage(start);
  const ns = ((used.user + used.system) * 1000) / N;
  console.log(`${label}: ${ns.toFixed(0)} ns/request of CPU (sink ${sink % 7})`);
}

for (let round = 0; round < 3; round++) {
  measure("client traceparent", CLIENT);
  measure("no traceparent (new trace)", undefined);
}
