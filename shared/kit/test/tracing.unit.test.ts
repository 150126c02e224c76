import { expect } from "chai";
import { headers as natsHeaders } from "@nats-io/transport-node";
import {
  childOf,
  formatTraceparent,
  isValidSpanId,
  isValidTraceId,
  isValidTracestate,
  loadTracingConfig,
  newSpanId,
  newTraceId,
  parseTraceparent,
  shownEndpoint,
  stopTracing,
  putTrace,
  takeTrace,
  type Tracer,
} from "../src/tracing/index";
import { createLogger } from "../src/logger";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN = "00f067aa0ba902b7";
const VALID = `00-${TRACE}-${SPAN}-01`;

describe("traceparent", () => {
  it("reads a valid version-00 header and formats it back unchanged", () => {
    const ctx = parseTraceparent(VALID);
    expect(ctx).to.deep.equal({
      traceId: TRACE,
      spanId: SPAN,
      sampled: true,
      traceState: undefined,
    });
    expect(formatTraceparent(ctx!)).to.equal(VALID);
  });

  it("reads the sampled flag and writes only that bit", () => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-00`)?.sampled).to.equal(false);
    const odd = parseTraceparent(`00-${TRACE}-${SPAN}-03`);
    expect(odd?.sampled).to.equal(true);
    expect(formatTraceparent(odd!)).to.equal(`00-${TRACE}-${SPAN}-01`);
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-02`)?.sampled).to.equal(false);
  });

  const refused: [string, string][] = [
    ["an all-zero trace id", `00-${"0".repeat(32)}-${SPAN}-01`],
    ["an all-zero span id", `00-${TRACE}-${"0".repeat(16)}-01`],
    ["upper-case hex", `00-${TRACE.toUpperCase()}-${SPAN}-01`],
    ["an upper-case flag", `00-${TRACE}-${SPAN}-0A`],
    ["version ff", `ff-${TRACE}-${SPAN}-01`],
    ["version 00 with a trailing field", `${VALID}-abc`],
    ["version 00 with trailing text", `${VALID}x`],
    ["a short trace id", `00-${TRACE.slice(1)}-${SPAN}-01`],
    ["a long span id", `00-${TRACE}-${SPAN}a-01`],
    ["non-hex digits", `00-${TRACE.slice(0, 31)}g-${SPAN}-01`],
    ["wrong separators", `00_${TRACE}_${SPAN}_01`],
    ["two headers joined by a proxy", `${VALID}, ${VALID}`],
    ["an empty value", ""],
    ["garbage", "hello"],
    ["a future version without a dash after the flags", `01-${TRACE}-${SPAN}-01x`],
    ["a future version past the length bound", `01-${TRACE}-${SPAN}-01-${"a".repeat(600)}`],
  ];
  for (const [what, value] of refused) {
    it(`refuses ${what}`, () => {
      expect(parseTraceparent(value)).to.equal(undefined);
    });
  }

  it("reads a future version's first four fields and ignores what it appends", () => {
    const ctx = parseTraceparent(`cc-${TRACE}-${SPAN}-01-what-the-future-has`);
    expect(ctx?.traceId).to.equal(TRACE);
    expect(ctx?.spanId).to.equal(SPAN);
    expect(formatTraceparent(ctx!)).to.equal(VALID);
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01`)?.traceId).to.equal(TRACE);
  });

  it("keeps a valid tracestate unchanged and drops an invalid one", () => {
    const state = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7,tenant@vendor=x y";
    expect(parseTraceparent(VALID, state)?.traceState).to.equal(state);
    expect(parseTraceparent(VALID, "Upper=1")?.traceState).to.equal(undefined);
    expect(parseTraceparent(VALID, "a=1,a=2")?.traceState).to.equal(undefined);
    expect(parseTraceparent(VALID, "a=x,y")?.traceState).to.equal(undefined);
    expect(parseTraceparent(VALID, "a=b=c")?.traceState).to.equal(undefined);
    expect(parseTraceparent(VALID, "a=tab\there")?.traceState).to.equal(undefined);
  });

  it("trims only spaces and tabs around members, so no control character is passed on", () => {
    expect(isValidTracestate("a=1 ,\tb=2\t")).to.equal(true);
    for (const junk of ["\v", "\f", "\u00a0", "\ufeff", "\r", "\n"])
      expect(isValidTracestate(`a=1,${junk}`), JSON.stringify(junk)).to.equal(false);
  });

  it("refuses a tracestate with more than 32 members", () => {
    const members = (n: number) => Array.from({ length: n }, (_, i) => `k${i}=v`).join(",");
    expect(isValidTracestate(members(32))).to.equal(true);
    expect(isValidTracestate(members(33))).to.equal(false);
    expect(isValidTracestate("a=1,,b=2")).to.equal(true);
  });
});

describe("trace ids", () => {
  it("are valid and distinct across pool refills", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const t = newTraceId();
      const s = newSpanId();
      expect(isValidTraceId(t), t).to.equal(true);
      expect(isValidSpanId(s), s).to.equal(true);
      seen.add(t).add(s);
    }
    expect(seen.size).to.equal(2000);
  });

  it("continue a trace with a new span id, or start one", () => {
    const parent = parseTraceparent(VALID, "a=1")!;
    const child = childOf(parent);
    expect(child.traceId).to.equal(TRACE);
    expect(child.spanId).to.not.equal(SPAN);
    expect(child.sampled).to.equal(true);
    expect(child.traceState).to.equal("a=1");
    const fresh = childOf(undefined);
    expect(fresh.traceId).to.not.equal(TRACE);
    expect(isValidTraceId(fresh.traceId)).to.equal(true);
    expect(fresh.sampled).to.equal(false);
  });
});

describe("trace context in NATS headers", () => {
  it("round-trips the context and the request id", () => {
    const ctx = parseTraceparent(VALID, "a=1")!;
    const got = takeTrace(putTrace(ctx, "req-1"));
    expect(got.trace).to.deep.equal(ctx);
    expect(got.requestId).to.equal("req-1");
  });

  it("reads a publisher's headers in any case", () => {
    const h = natsHeaders();
    h.set("Traceparent", VALID);
    h.set("TraceState", "a=1");
    expect(takeTrace(h).trace).to.deep.equal(parseTraceparent(VALID, "a=1"));
  });

  it("refuses a repeated or malformed traceparent and an unprintable request id", () => {
    const h = natsHeaders();
    h.append("traceparent", VALID);
    h.append("traceparent", VALID);
    expect(takeTrace(h).trace).to.equal(undefined);
    const bad = natsHeaders();
    bad.set("traceparent", `00-${"0".repeat(32)}-${SPAN}-01`);
    bad.set("x-request-id", "has space");
    expect(takeTrace(bad)).to.deep.equal({ trace: undefined, requestId: undefined });
    expect(takeTrace(undefined)).to.deep.equal({ trace: undefined, requestId: undefined });
  });

  it("overwrites a context already in the headers", () => {
    const h = putTrace(parseTraceparent(VALID, "a=1")!);
    const next = childOf(parseTraceparent(VALID));
    putTrace({ ...next, traceState: undefined }, undefined, h);
    expect(takeTrace(h).trace?.spanId).to.equal(next.spanId);
    expect(takeTrace(h).trace?.traceState).to.equal(undefined);
  });
});

describe("loadTracingConfig", () => {
  it("is off unless an OTLP endpoint is set", () => {
    expect(loadTracingConfig({})).to.equal(undefined);
    expect(loadTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "" })).to.equal(undefined);
    expect(
      loadTracingConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318",
        OTEL_SDK_DISABLED: "true",
      }),
    ).to.equal(undefined);
  });

  it("appends /v1/traces to the base endpoint and takes the traces endpoint as is", () => {
    expect(
      loadTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318/" })?.tracesUrl,
    ).to.equal("http://c:4318/v1/traces");
    expect(
      loadTracingConfig({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://t:443/custom",
      })?.tracesUrl,
    ).to.equal("https://t:443/custom");
  });

  it("reads the service name and a ratio sampler", () => {
    const c = loadTracingConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318",
      OTEL_SERVICE_NAME: "edge",
      OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
      OTEL_TRACES_SAMPLER_ARG: "0.25",
    });
    expect(c).to.deep.include({
      serviceName: "edge",
      sampler: "parentbased_traceidratio",
      ratio: 0.25,
    });
  });

  it("names the variable it refuses", () => {
    const base = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" };
    expect(() => loadTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "grpc://c" })).to.throw(
      /OTEL_EXPORTER_OTLP_ENDPOINT: must use http or https/,
    );
    expect(() => loadTracingConfig({ ...base, OTEL_TRACES_SAMPLER: "jaeger_remote" })).to.throw(
      /OTEL_TRACES_SAMPLER: must be one of/,
    );
    expect(() =>
      loadTracingConfig({
        ...base,
        OTEL_TRACES_SAMPLER: "traceidratio",
        OTEL_TRACES_SAMPLER_ARG: "2",
      }),
    ).to.throw(/OTEL_TRACES_SAMPLER_ARG/);
  });

  it("never repeats an endpoint's credentials in its error or its log line", () => {
    const bad = "http://user:s3cret@[collector:4318";
    expect(() => loadTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: bad }))
      .to.throw(/OTEL_EXPORTER_OTLP_ENDPOINT: must be a URL/)
      .with.property("message")
      .that.does.not.include("s3cret");
    expect(shownEndpoint("https://user:s3cret@c:4318/v1/traces?api_key=s3cret")).to.equal(
      "https://c:4318/v1/traces",
    );
  });
});

describe("stopTracing", () => {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger("test", "info", {
    write: (l: string) => {
      lines.push(JSON.parse(l) as Record<string, unknown>);
    },
  });
  const tracerWith = (shutdown: () => Promise<void>): Tracer => ({
    recording: true,
    startSpan: () => {
      throw new Error("unused");
    },
    shutdown,
  });

  it("gives up on a collector that never answers after the cap, and says so", async () => {
    lines.length = 0;
    await stopTracing(
      tracerWith(() => new Promise<void>(() => undefined)),
      logger,
      20,
    );
    expect(lines.map((l) => l.msg)).to.deep.equal(["span export did not finish; spans dropped"]);
  });

  it("resolves when the export fails, with the error's message only", async () => {
    lines.length = 0;
    await stopTracing(
      tracerWith(() => Promise.reject(new Error("ECONNREFUSED"))),
      logger,
    );
    expect(lines).to.have.length(1);
    expect(lines[0]).to.include({ msg: "span export failed", err: "ECONNREFUSED" });
  });
});
