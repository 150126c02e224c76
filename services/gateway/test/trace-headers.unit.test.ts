import { expect } from "chai";
import type { MessageQueueTrigger } from "@fizz/events";
import { childOf, parseTraceparent } from "@fizz/kit";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { messageRequest } from "../src/bus/mqt/common";
import { scanRequestHeaders } from "../src/front-door/headers";

const TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

describe("trace headers at the front door", () => {
  it("reads traceparent and tracestate and never forwards the client's", () => {
    // prettier-ignore
    const s = scanRequestHeaders([
      "Traceparent", TP,
      "tracestate", "a=1",
      "TraceState", "b=2",
      "Accept", "*/*",
    ]);
    expect(s.traceparent).to.equal(TP);
    expect(s.tracestate).to.equal("a=1,b=2");
    expect(s.headers).to.deep.equal(["Accept", "*/*"]);
    expect(parseTraceparent(s.traceparent, s.tracestate)?.traceState).to.equal("a=1,b=2");
  });

  it("treats a repeated traceparent as invalid, so a new trace starts", () => {
    const s = scanRequestHeaders(["traceparent", TP, "traceparent", TP]);
    expect(s.traceparent).to.equal("");
    expect(parseTraceparent(s.traceparent)).to.equal(undefined);
  });
});

describe("trace headers of a subject trigger's message", () => {
  it("passes the function none of the headers the gateway sets, only the publisher's own", () => {
    const h = natsHeaders();
    h.set("traceparent", TP);
    h.set("tracestate", "a=1");
    h.set("X-Request-Id", "forged");
    h.set("X-Call-Id", "forged");
    h.set("X-Fizz-Instance", "forged");
    h.set("X-Forwarded-For", "10.0.0.1");
    h.set("Forwarded", "for=10.0.0.1");
    h.set("X-Order", "42");
    const t = {
      metadata: { name: "orders", namespace: "default" },
      spec: { function: "fn", contentType: "application/json" },
    } as unknown as MessageQueueTrigger;
    const trace = childOf(parseTraceparent(TP));
    const req = messageRequest(
      t,
      "orders.new",
      h,
      new Uint8Array(),
      "call-1",
      1024,
      undefined,
      trace,
    );
    const names = req.headers.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names.filter((n) => n === "x-request-id")).to.have.length(1);
    expect(req.headers[req.headers.indexOf("x-request-id") + 1]).to.equal("call-1");
    expect(names.filter((n) => n === "x-call-id")).to.have.length(1);
    for (const n of [
      "traceparent",
      "tracestate",
      "x-fizz-instance",
      "x-forwarded-for",
      "forwarded",
    ])
      expect(names).to.not.include(n);
    expect(req.headers).to.include.members(["X-Order", "42"]);
    expect(req.trace).to.equal(trace);
  });
});
