import { validateHeaderName, validateHeaderValue } from "node:http";
import { expect } from "chai";
import { OwnResponse, type ResponseSink } from "../src/front-door/own-response";

/** A sink that keeps what the response writes. */
function sink(): ResponseSink & { out: string } {
  return {
    out: "",
    write(data, more, tail) {
      this.out += data.toString() + (more?.toString() ?? "") + (tail ?? "");
      return true;
    },
    finished: () => undefined,
    destroy: () => undefined,
    commonHeaders: () => "",
  };
}

const throws = (f: () => void): boolean => {
  try {
    f();
    return false;
  } catch {
    return true;
  }
};

describe("own front end's response head, against node's http validation", () => {
  it("refuses every header value node's ServerResponse refuses, and only those (each byte, some beyond latin1)", () => {
    const differ: string[] = [];
    for (const c of [...Array.from({ length: 256 }, (_, i) => i), 0x100, 0x20ac, 0xfeff]) {
      const value = `a${String.fromCharCode(c)}b`;
      const node = throws(() => validateHeaderValue("x-a", value));
      const own = throws(() =>
        new OwnResponse(sink(), false, true, false).writeHead(200, ["x-a", value]),
      );
      if (node !== own) differ.push(`0x${c.toString(16)}: node ${node ? "refuses" : "takes"}`);
    }
    expect(differ).to.deep.equal([]);
  });

  it("refuses every header name node's ServerResponse refuses, and only those (each byte)", () => {
    const differ: string[] = [];
    for (let c = 0; c < 256; c++) {
      const name = `x${String.fromCharCode(c)}a`;
      const node = throws(() => validateHeaderName(name));
      const own = throws(() =>
        new OwnResponse(sink(), false, true, false).writeHead(200, [name, "v"]),
      );
      if (node !== own) differ.push(`0x${c.toString(16)}: node ${node ? "refuses" : "takes"}`);
    }
    expect(differ).to.deep.equal([]);
  });

  it("writes nothing of a head it refuses", () => {
    const s = sink();
    const res = new OwnResponse(s, false, true, false);
    expect(() => res.writeHead(200, ["x-a", "ok", "x-b", "a\x01b"])).to.throw();
    expect(s.out).to.equal("");
    expect(res.headersSent).to.equal(false);
  });
});
