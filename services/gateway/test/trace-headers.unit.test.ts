import { expect } from "chai";
import { parseTraceparent } from "@fizz/kit";
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
