import { expect } from "chai";
import {
  headerValue,
  isHopByHop,
  responseHeaders,
  scanRequestHeaders,
} from "../src/front-door/headers";

describe("headers", () => {
  it("knows the hop-by-hop headers, including every Proxy-*", () => {
    for (const h of [
      "connection",
      "keep-alive",
      "te",
      "trailer",
      "transfer-encoding",
      "upgrade",
      "proxy-authorization",
      "proxy-foo",
    ]) {
      expect(isHopByHop(h), h).to.equal(true);
    }
    expect(isHopByHop("content-type")).to.equal(false);
  });

  it("strips hop-by-hop request headers and those named in Connection, keeping the rest in order", () => {
    // prettier-ignore
    const s = scanRequestHeaders([
      "Host", "example.com:8080",
      "Connection", "keep-alive, X-Secret",
      "Keep-Alive", "timeout=5",
      "TE", "trailers",
      "Trailer", "X-T",
      "Upgrade", "h2c",
      "Proxy-Authorization", "Basic abc",
      "X-Secret", "1",
      "Accept", "text/plain",
      "X-Custom", "a",
      "Expect", "100-continue",
    ]);
    expect(s.headers).to.deep.equal(["Accept", "text/plain", "X-Custom", "a"]);
    expect(s.host).to.equal("example.com:8080");
  });

  it("takes gateway-owned headers out of what is forwarded and remembers them", () => {
    // prettier-ignore
    const s = scanRequestHeaders([
      "X-Request-Id", "abc-123",
      "X-Forwarded-For", "10.0.0.1",
      "x-forwarded-for", "10.0.0.2",
      "X-Forwarded-Proto", "https",
      "Forwarded", "for=10.0.0.1",
      "forwarded", "for=10.0.0.2;host=evil.example",
      "X-Fizz-Instance", "forged",
      "X-Fizz-Params-id", "forged",
      "Content-Length", "12",
    ]);
    expect(s.headers).to.deep.equal(["Content-Length", "12"]);
    expect(s.requestId).to.equal("abc-123");
    expect(s.forwardedFor).to.equal("10.0.0.1, 10.0.0.2");
    expect(s.forwardedProto).to.equal("https");
    expect(s.forwarded).to.equal("for=10.0.0.1, for=10.0.0.2;host=evil.example");
    expect(s.contentLength).to.equal(12);
    expect(s.chunked).to.equal(false);
  });

  it("flags chunked bodies and unparsable Content-Length", () => {
    expect(scanRequestHeaders(["Transfer-Encoding", "chunked"]).chunked).to.equal(true);
    expect(Number.isNaN(scanRequestHeaders(["Content-Length", "1e3"]).contentLength)).to.equal(
      true,
    );
    expect(scanRequestHeaders([]).contentLength).to.equal(-1);
  });

  it("ignores a client request id that is not a sane token", () => {
    expect(scanRequestHeaders(["X-Request-Id", "has space"]).requestId).to.equal(undefined);
    expect(scanRequestHeaders(["X-Request-Id", "x".repeat(201)]).requestId).to.equal(undefined);
  });

  it("strips hop-by-hop response headers (from Buffers) and echoes the request id", () => {
    // prettier-ignore
    const raw = [
      "Content-Type", "text/event-stream",
      "Transfer-Encoding", "chunked",
      "Connection", "keep-alive, X-Hop",
      "Keep-Alive", "timeout=5",
      "X-Hop", "1",
      "X-Request-Id", "upstream-id",
      "Set-Cookie", "a=1",
      "Set-Cookie", "b=2",
    ].map((s) => Buffer.from(s, "latin1"));
    const h = responseHeaders(raw, "rid-1");
    expect(h).to.deep.equal([
      "Content-Type",
      "text/event-stream",
      "Set-Cookie",
      "a=1",
      "Set-Cookie",
      "b=2",
      "x-request-id",
      "rid-1",
    ]);
    expect(headerValue(h, "x-request-id")).to.equal("rid-1");
    expect(headerValue(h, "content-length")).to.equal(undefined);
  });
  it("drops what Connection names whatever the case, across repeated Connection headers", () => {
    // prettier-ignore
    const s = scanRequestHeaders([
      "Connection", "Keep-Alive, X-SECRET",
      "connection", "x-other , Upgrade",
      "x-secret", "1",
      "X-Other", "2",
      "Upgrade", "websocket",
      "X-Kept", "3",
    ]);
    expect(s.headers).to.deep.equal(["X-Kept", "3"]);
    // prettier-ignore
    const plain = scanRequestHeaders(["Connection", " CLOSE ", "X-Kept", "1"]);
    expect(plain.headers).to.deep.equal(["X-Kept", "1"]);
    // prettier-ignore
    const raw = [
      "CONNECTION", "keep-alive, Upgrade",
      "Connection", "X-Hop",
      "Upgrade", "h2c",
      "x-hop", "1",
      "Content-Length", "2",
    ].map((v) => Buffer.from(v, "latin1"));
    expect(responseHeaders(raw, "rid")).to.deep.equal([
      "Content-Length",
      "2",
      "x-request-id",
      "rid",
    ]);
  });
});
