import { expect } from "chai";
import { InvalidArgumentError } from "commander";
import {
  collectMethods,
  joinQuery,
  parseDuration,
  parseHeader,
  parseInteger,
  parseSeconds,
  splitCommand,
} from "../src/options.js";
import { formatAge } from "../src/output.js";

describe("option parsing", () => {
  it("splits --command like a shell: whitespace, quotes and backslash escapes", () => {
    expect(splitCommand("node server.mjs")).to.deep.equal(["node", "server.mjs"]);
    expect(splitCommand(`  python3 -u "my dir/server.py" 'a b' c\\ d ""`)).to.deep.equal([
      "python3",
      "-u",
      "my dir/server.py",
      "a b",
      "c d",
      "",
    ]);
    expect(splitCommand(`sh -c "echo \\"hi\\""`)).to.deep.equal(["sh", "-c", 'echo "hi"']);
  });

  it("rejects an empty --command and an unterminated quote", () => {
    expect(() => splitCommand("   ")).to.throw(InvalidArgumentError);
    expect(() => splitCommand(`node "server.mjs`)).to.throw(InvalidArgumentError, /unterminated/);
  });

  it("parses integers strictly and seconds as any finite number", () => {
    expect(parseInteger("42")).to.equal(42);
    expect(() => parseInteger("4.2")).to.throw(InvalidArgumentError);
    expect(() => parseInteger("10x")).to.throw(InvalidArgumentError);
    expect(parseSeconds("0.5")).to.equal(0.5);
    expect(() => parseSeconds("soon")).to.throw(InvalidArgumentError);
    expect(() => parseSeconds("")).to.throw(InvalidArgumentError);
  });

  it("upper-cases methods, accepts comma lists and drops duplicates", () => {
    expect(collectMethods("post", collectMethods("get,Put"))).to.deep.equal(["GET", "PUT", "POST"]);
    expect(collectMethods("GET", ["GET"])).to.deep.equal(["GET"]);
    expect(() => collectMethods("G3T")).to.throw(InvalidArgumentError);
  });

  it("splits a header at the first colon and trims the value", () => {
    expect(parseHeader("Authorization: Bearer a:b")).to.deep.equal(["Authorization", "Bearer a:b"]);
    expect(() => parseHeader(": x")).to.throw(InvalidArgumentError);
    expect(() => parseHeader("Bad Name: x")).to.throw(InvalidArgumentError);
  });

  it("formats ages in the largest unit that fits", () => {
    const now = Date.parse("2025-01-01T00:00:00Z");
    const ago = (ms: number) => new Date(now - ms).toISOString();
    expect(formatAge(ago(42_000), now)).to.equal("42s");
    expect(formatAge(ago(5 * 60_000), now)).to.equal("5m");
    expect(formatAge(ago(30 * 3_600_000), now)).to.equal("30h");
    expect(formatAge(ago(3 * 86_400_000), now)).to.equal("3d");
    expect(formatAge(undefined, now)).to.equal("-");
  });

  it("reads durations as Fission writes them (30s, 1m30s, 500ms, 0) and bare numbers as seconds", () => {
    expect(parseDuration("30s")).to.equal(30_000);
    expect(parseDuration("1m30s")).to.equal(90_000);
    expect(parseDuration("500ms")).to.equal(500);
    expect(parseDuration("1h")).to.equal(3_600_000);
    expect(parseDuration("0")).to.equal(0);
    expect(parseDuration("2.5")).to.equal(2500);
    for (const bad of ["", "soon", "-1s", "5d", "1m 30s"]) {
      expect(() => parseDuration(bad), bad).to.throw(InvalidArgumentError);
    }
  });

  it("joins repeated --query values with & as written", () => {
    expect(joinQuery("b=2", joinQuery("a=1"))).to.equal("a=1&b=2");
    expect(joinQuery("?a=1")).to.equal("a=1");
    expect(joinQuery("x=%20", "a=1&b=2")).to.equal("a=1&b=2&x=%20");
  });
});
