import { expect } from "chai";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createLogger } from "../src/logger";
import {
  loadTracingConfig,
  setTracer,
  startTracing,
  stopTracing,
  OFF_TRACER,
} from "../src/tracing/index";

/** A port nothing listens on: taken, then given back. */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

describe("span export (OpenTelemetry SDK) against a collector that is not there", () => {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const logger = createLogger("test", "info", {
    write: (l: string) => {
      raw.push(l);
      lines.push(JSON.parse(l) as Record<string, unknown>);
    },
  });
  const saved = process.env.OTEL_EXPORTER_OTLP_HEADERS;
  after(() => {
    setTracer(OFF_TRACER);
    if (saved === undefined) delete process.env.OTEL_EXPORTER_OTLP_HEADERS;
    else process.env.OTEL_EXPORTER_OTLP_HEADERS = saved;
  });

  it("says the export failed in the service's log, without the endpoint's or the headers' secrets", async () => {
    // The SDK reads the headers from the environment itself.
    process.env.OTEL_EXPORTER_OTLP_HEADERS = "authorization=Bearer hdr-s3cret";
    const port = await closedPort();
    const config = loadTracingConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://user:url-s3cret@127.0.0.1:${port}/?token=q-s3cret`,
    });
    const t = await startTracing(config, "test", logger);
    expect(t.recording).to.equal(true);
    t.startSpan("work", "internal", undefined).end();
    await stopTracing(t, logger, 60_000);
    const msgs = lines.map((l) => l.msg);
    expect(msgs).to.include("exporting traces (OTLP/HTTP)");
    const failed = lines.find((l) => l.msg === "span export failed");
    expect(failed, msgs.join(" | ")).to.not.equal(undefined);
    expect(failed).to.include({ spansLost: 1 });
    expect(raw.join("\n")).to.not.match(/s3cret/);
  });
});
