import { expect } from "chai";
import type { ServerResponse } from "node:http";
import { writeResponseHead } from "../src/front-door/response-head";

/** What writeResponseHead did to a response: the head it wrote and whether it flushed it. */
function fakeResponse(): { res: ServerResponse; head: string[]; flushed: () => boolean } {
  const head: string[] = [];
  let flushed = false;
  const res = {
    writeHead(_status: number, h: string[]) {
      head.push(...h);
      return res;
    },
    flushHeaders() {
      flushed = true;
    },
  };
  return { res: res as unknown as ServerResponse, head, flushed: () => flushed };
}

// writeResponseHead reuses one object for what it noted of a head (response-head.ts): nothing of
// one response may carry over into the next.
describe("writeResponseHead", () => {
  it("notes each response's Content-Length and Retry-After afresh", () => {
    const a = fakeResponse();
    // prettier-ignore
    expect(writeResponseHead(a.res, "GET", "r1", 429, [
      "Content-Length", "5", "Retry-After", "7",
    ])).to.equal(5);
    expect(a.head).to.deep.equal(["Content-Length", "5", "Retry-After", "7", "x-request-id", "r1"]);
    expect(a.flushed()).to.equal(false);

    // The next 429 has neither: it gets the default retry-after, is a stream, is flushed.
    const b = fakeResponse();
    expect(writeResponseHead(b.res, "GET", "r2", 429, ["Content-Type", "text/plain"])).to.equal(-1);
    // prettier-ignore
    expect(b.head).to.deep.equal([
      "Content-Type", "text/plain", "x-request-id", "r2", "retry-after", "1",
    ]);
    expect(b.flushed()).to.equal(true);

    const c = fakeResponse();
    expect(writeResponseHead(c.res, "GET", "r3", 200, ["content-length", "0"])).to.equal(0);
    expect(c.flushed()).to.equal(false);
    const d = fakeResponse();
    expect(writeResponseHead(d.res, "HEAD", "r4", 200, ["content-length", "9"])).to.equal(-1);
  });

  it("reads what it noted before calling node, so a writeHead that throws leaves nothing behind", () => {
    const bad = fakeResponse();
    bad.res.writeHead = () => {
      throw new Error("invalid header");
    };
    expect(() => writeResponseHead(bad.res, "GET", "r1", 200, ["Content-Length", "3"])).to.throw();
    const next = fakeResponse();
    expect(writeResponseHead(next.res, "GET", "r2", 200, [])).to.equal(-1);
    expect(next.flushed()).to.equal(true);
  });
});
