import { expect } from "chai";
import { readFileSync } from "node:fs";
import path from "node:path";
import { connect, headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { parseTraceparent, type TraceContext } from "@fizz/kit";
import { startPlatform, type Platform } from "./helpers";
import { startOtlpReceiver, type ReceivedSpan } from "./otlp-receiver";
import { dumpLogsOnFailure, eventually, fizzOk } from "./probes";

/**
 * Traces through the whole platform: W3C traceparent from a client (or started at the gateway)
 * reaches the function over HTTP, an async call and a subject trigger; with
 * OTEL_EXPORTER_OTLP_ENDPOINT set, every service exports its spans to a real OTLP/HTTP endpoint
 * started here, joined into one trace; service log lines carry the trace id.
 */
const KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 };

interface Echo {
  traceparent: string | null;
  tracestate: string | null;
  requestId: string | null;
}

describe("traces, end to end", function () {
  this.timeout(180_000);
  let p: Platform;
  let nc: NatsConnection;
  let otlp: Awaited<ReturnType<typeof startOtlpReceiver>>;
  afterEach(dumpLogsOnFailure(() => p, 150));

  /** The first call of the function: its lease and specialization belong to this trace. */
  const coldTrace = "0af7651916cd43dd8448eb211c80319c";
  const coldParent = "b7ad6b7169203331";
  let coldSeen: TraceContext | undefined;

  const echoOf = async (res: Response): Promise<Echo> => {
    expect(res.status, await res.clone().text()).to.equal(200);
    return (await res.json()) as Echo;
  };
  const spansOf = (traceId: string) => otlp.spans.filter((s) => s.traceId === traceId);
  const one = (spans: ReceivedSpan[], name: string): ReceivedSpan => {
    const found = spans.filter((s) => s.name === name);
    expect(found, `one ${name} span in ${JSON.stringify(spans.map((s) => s.name))}`).to.have.length(
      1,
    );
    return found[0]!;
  };

  before(async () => {
    otlp = await startOtlpReceiver();
    p = await startPlatform({
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      // The SDK's batch processor exports every 5 s by default; the test need not wait that long.
      OTEL_BSP_SCHEDULE_DELAY: "200",
      FIZZ_LOG_LEVEL: "debug",
    });
    nc = await connect(p.appNats);
    await p.file(
      "trace-echo.js",
      readFileSync(path.join(import.meta.dirname, "fixtures", "trace-echo.js"), "utf8"),
    );
    await fizzOk(p, "env create --name nodejs --image fizz/env-node");
    await fizzOk(p, "fn create --name echo --env nodejs --code trace-echo.js");
  });
  after(async () => {
    await nc?.close();
    await p?.stop();
    await otlp?.close();
  });

  it("passes the function the client's trace with the gateway's span as parent", async () => {
    const sent = `00-${coldTrace}-${coldParent}-01`;
    const echo = await echoOf(
      await fetch(`${p.gatewayUrl}/function/echo`, {
        headers: { traceparent: sent, tracestate: "vendor=abc" },
      }),
    );
    const seen = parseTraceparent(echo.traceparent ?? undefined);
    expect(seen, `a valid traceparent, got ${echo.traceparent}`).to.not.equal(undefined);
    expect(seen!.traceId).to.equal(coldTrace);
    expect(seen!.spanId).to.not.equal(coldParent);
    expect(seen!.sampled).to.equal(true);
    expect(echo.tracestate).to.equal("vendor=abc");
    expect(echo.requestId).to.be.a("string").and.not.equal("");
    coldSeen = seen;
  });

  it("starts a new valid trace when the client sends none", async () => {
    const a = parseTraceparent(
      (await echoOf(await fetch(`${p.gatewayUrl}/function/echo`))).traceparent ?? undefined,
    );
    const b = parseTraceparent(
      (await echoOf(await fetch(`${p.gatewayUrl}/function/echo`))).traceparent ?? undefined,
    );
    expect(a, "a valid traceparent").to.not.equal(undefined);
    expect(b, "a valid traceparent").to.not.equal(undefined);
    expect(a!.traceId).to.not.equal(b!.traceId);
  });

  it("starts a fresh trace instead of passing on a malformed traceparent", async () => {
    for (const garbage of [
      `00-${"0".repeat(32)}-${coldParent}-01`,
      `00-${coldTrace.toUpperCase()}-${coldParent}-01`,
      `00-${coldTrace}-${coldParent}-01-extra`,
      "00-zzzz",
    ]) {
      const echo = await echoOf(
        await fetch(`${p.gatewayUrl}/function/echo`, {
          headers: { traceparent: garbage, tracestate: "vendor=abc" },
        }),
      );
      const seen = parseTraceparent(echo.traceparent ?? undefined);
      expect(seen, `a valid traceparent for ${garbage}, got ${echo.traceparent}`).to.not.equal(
        undefined,
      );
      expect(echo.traceparent).to.not.include(coldTrace);
      expect(echo.traceparent!.toLowerCase()).to.not.include(coldTrace);
      expect(echo.tracestate, "no tracestate without a valid traceparent").to.equal(null);
    }
  });

  it("continues the /async-function request's trace in the invoker's call", async () => {
    const trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    const res = await fetch(`${p.gatewayUrl}/async-function/echo`, {
      method: "POST",
      headers: { traceparent: `00-${trace}-00f067aa0ba902b7-01` },
      body: "x",
    });
    expect(res.status).to.equal(202);
    const callId = res.headers.get("x-call-id");
    const status = await eventually(
      "the async call succeeded",
      async () => {
        const r = await fetch(`${p.gatewayUrl}/async-function/echo/${callId}`);
        const s = (await r.json()) as { state: string; body?: string };
        return s.state === "succeeded" ? s : undefined;
      },
      30_000,
      200,
    );
    const echo = JSON.parse(status.body ?? "{}") as Echo;
    const seen = parseTraceparent(echo.traceparent ?? undefined);
    expect(seen?.traceId, `got ${echo.traceparent}`).to.equal(trace);
    expect(seen?.spanId).to.not.equal("00f067aa0ba902b7");

    const spans = await eventually(
      "the async request's spans are exported",
      () => {
        const s = spansOf(trace);
        return s.some((x) => x.name === "invoker.deliver") &&
          s.some((x) => x.name === "gateway.call")
          ? s
          : undefined;
      },
      30_000,
      200,
    );
    const request = one(spans, "gateway.request");
    expect(request.parentSpanId).to.equal("00f067aa0ba902b7");
    const deliver = one(spans, "invoker.deliver");
    expect(deliver.kind).to.equal(KIND.consumer);
    expect(deliver.parentSpanId).to.equal(request.spanId);
    const call = one(spans, "gateway.call");
    expect(call.parentSpanId).to.equal(deliver.spanId);
    expect(seen?.spanId).to.equal(call.spanId);
  });

  it("continues the trace a subject trigger's message carries", async () => {
    await fizzOk(p, "mqt create --name traced --function echo --subject demo.traced");
    const trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    const h = natsHeaders();
    h.set("traceparent", `00-${trace}-10f067aa0ba902b8-01`);
    const reply = await eventually(
      "the subject trigger answers",
      async () => {
        try {
          return await nc.request("demo.traced", new TextEncoder().encode("{}"), {
            timeout: 3000,
            headers: h,
          });
        } catch {
          return undefined;
        }
      },
      30_000,
      200,
    );
    const echo = JSON.parse(new TextDecoder().decode(reply.data)) as Echo;
    const seen = parseTraceparent(echo.traceparent ?? undefined);
    expect(seen?.traceId, `got ${echo.traceparent}`).to.equal(trace);

    const spans = await eventually(
      "the delivery's spans are exported",
      () => {
        const s = spansOf(trace);
        return s.some((x) => x.name === "mqt.deliver") && s.some((x) => x.name === "gateway.call")
          ? s
          : undefined;
      },
      30_000,
      200,
    );
    const deliver = one(spans, "mqt.deliver");
    expect(deliver.kind).to.equal(KIND.consumer);
    expect(deliver.parentSpanId).to.equal("10f067aa0ba902b8");
    expect(deliver.service).to.equal("fizz-gateway");
    expect(one(spans, "gateway.call").parentSpanId).to.equal(deliver.spanId);
  });

  it("starts a trace per timer firing that the invoker's delivery and call continue", async () => {
    const created = await p.fizz(
      "timer",
      "create",
      "--name",
      "traced-tick",
      "--function",
      "echo",
      "--cron",
      "@every 1s",
    );
    expect(created.code, created.stderr).to.equal(0);
    const chain = await eventually(
      "a timer firing's delivery and call are exported in its trace",
      () => {
        for (const fire of otlp.spans.filter((s) => s.name === "timer.fire")) {
          const deliver = otlp.spans.find(
            (s) => s.name === "invoker.deliver" && s.parentSpanId === fire.spanId,
          );
          const call =
            deliver &&
            otlp.spans.find((s) => s.name === "gateway.call" && s.parentSpanId === deliver.spanId);
          if (deliver && call) return { fire, deliver, call };
        }
        return undefined;
      },
      30_000,
      200,
    );
    await fizzOk(p, "timer delete --name traced-tick");
    expect(chain.fire).to.include({
      kind: KIND.producer,
      service: "fizz-scheduler",
      parentSpanId: "",
    });
    expect(chain.deliver.traceId).to.equal(chain.fire.traceId);
    expect(chain.deliver.attributes["fizz.source"]).to.equal("timer");
    expect(chain.call.traceId).to.equal(chain.fire.traceId);
  });

  it("exports the cold request's gateway, lease, specialization and call spans as one trace", async () => {
    expect(coldSeen, "the first test ran").to.not.equal(undefined);
    const names = [
      "gateway.request",
      "gateway.lease",
      "scheduler.lease",
      "poolkeeper.specialize",
      "gateway.call",
    ];
    const spans = await eventually(
      "the cold request's spans are exported",
      () => {
        const s = spansOf(coldTrace);
        return names.every((n) => s.some((x) => x.name === n)) ? s : undefined;
      },
      30_000,
      200,
    );
    expect([...otlp.contentTypes]).to.include("application/json");
    const request = one(spans, "gateway.request");
    expect(request).to.include({
      kind: KIND.server,
      parentSpanId: coldParent,
      service: "fizz-gateway",
    });
    const lease = one(spans, "gateway.lease");
    expect(lease).to.include({ kind: KIND.client, parentSpanId: request.spanId });
    const schedulerLease = one(spans, "scheduler.lease");
    expect(schedulerLease).to.include({
      kind: KIND.server,
      parentSpanId: lease.spanId,
      service: "fizz-scheduler",
    });
    // The poolkeeper's server span (named after the subject) and the specialization inside it.
    const specializeServer = spans.find(
      (s) => s.service === "fizz-poolkeeper" && s.kind === KIND.server,
    );
    expect(specializeServer?.parentSpanId).to.equal(schedulerLease.spanId);
    const specialize = one(spans, "poolkeeper.specialize");
    expect(specialize.parentSpanId).to.equal(specializeServer?.spanId);
    expect(specialize.attributes["fizz.outcome"]).to.equal("ok");
    const call = one(spans, "gateway.call");
    expect(call).to.include({ kind: KIND.client, parentSpanId: request.spanId });
    // The function's parent is the call span.
    expect(coldSeen!.spanId).to.equal(call.spanId);
  });

  it("writes the trace id into the services' log lines for the request", () => {
    const traced = p.logs.filter((l) => l.includes(`"traceId":"${coldTrace}"`));
    expect(traced.length, "log lines carrying the cold request's trace id").to.be.greaterThan(0);
    expect(
      traced.some((l) => l.startsWith("[scheduler]")),
      "a scheduler line",
    ).to.equal(true);
    expect(
      traced.some((l) => l.startsWith("[poolkeeper]")),
      "a poolkeeper line",
    ).to.equal(true);
    // An instance started for (or after) the request outlives it: its output carries no trace.
    expect(traced.filter((l) => l.includes('"component":"function-logs"'))).to.deep.equal([]);
  });
});
