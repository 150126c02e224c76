import { expect } from "chai";
import { callMarker, CALL_MARKER_PREFIX, parseCallMarker } from "../src/logs";
import { Codecs } from "../src/codec";
import { subjects } from "../src/subjects";

describe("call markers", () => {
  it("round-trips a request id and the clearing marker", () => {
    expect(parseCallMarker(callMarker("3f2a-9c.1:x"))).to.equal("3f2a-9c.1:x");
    expect(parseCallMarker(callMarker(""))).to.equal("");
  });

  it("treats ordinary lines and malformed markers as output, not markers", () => {
    expect(parseCallMarker("hello")).to.equal(undefined);
    expect(parseCallMarker(`${CALL_MARKER_PREFIX}abc`)).to.equal(undefined);
    expect(parseCallMarker(callMarker("has space"))).to.equal(undefined);
    expect(parseCallMarker(callMarker("x".repeat(129)))).to.equal(undefined);
    expect(parseCallMarker(`say ${callMarker("a")}`)).to.equal(undefined);
  });

  it("uses an APC sequence, which terminals do not print", () => {
    expect(callMarker("a").startsWith("\u001b_")).to.equal(true);
    expect(callMarker("a").endsWith("\u001b\\")).to.equal(true);
  });
});

describe("log and stats contracts", () => {
  it("builds per-function log subjects under the prefix", () => {
    const s = subjects("fizz.v1");
    expect(s.logs("default", "hello")).to.equal("fizz.v1.logs.default.hello");
    expect(s.logsAll).to.equal("fizz.v1.logs.>");
    expect(s.gatewayStats).to.equal("fizz.v1.gateway.stats");
  });

  it("refuses a log line without its function's tags", () => {
    const bytes = new TextEncoder().encode(
      JSON.stringify({
        type: "logs.v2",
        data: { instanceId: "i", stream: "stdout", line: "x", ts: 1 },
      }),
    );
    expect(() => Codecs.logs.decode(bytes)).to.throw();
  });

  it("round-trips a tagged log line", () => {
    const line = {
      namespace: "default",
      function: "hello",
      revision: 3,
      instanceId: "i-1",
      stream: "stderr" as const,
      line: "boom",
      ts: 1_700_000_000_000,
      requestId: "r-1",
    };
    expect(Codecs.logs.decode(Codecs.logs.encode(line, "poolkeeper")).data).to.deep.equal(line);
  });
});
