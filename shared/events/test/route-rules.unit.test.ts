import { expect } from "chai";
import { routeProblem } from "../src/route-rules";

const pathProblem = (path: string) => routeProblem({ path })?.message;
const prefixProblem = (prefix: string) => routeProblem({ prefix })?.message;

describe("route rules (unit)", () => {
  it("accepts plain paths, parameters as whole segments, and prefixes", () => {
    for (const path of ["/", "/hello", "/users/{id}/posts/{post_id}", "/a-b/%20x", "/v1/{x-y}"]) {
      expect(pathProblem(path), path).to.equal(undefined);
    }
    for (const prefix of ["/", "/api", "/api/", "/functions", "/metricsx"]) {
      expect(prefixProblem(prefix), prefix).to.equal(undefined);
    }
  });

  it("refuses NUL and other control characters, raw or percent-encoded", () => {
    expect(pathProblem("/a\u0000b")).to.match(/control characters/);
    expect(pathProblem("/a\nb")).to.match(/control characters/);
    expect(pathProblem("/a%00b")).to.match(/encoded control characters/);
    expect(prefixProblem("/a%0d%0a")).to.match(/encoded control characters/);
  });

  it("refuses characters no client sends raw, which would make the route unmatchable", () => {
    for (const p of ["/café", "/a|b", "/a<b>", '/a"b', "/a\\b", "/a^b", "/a`b"]) {
      expect(pathProblem(p), p).to.match(/percent-encode/);
    }
    expect(pathProblem("/caf%C3%A9")).to.equal(undefined);
    expect(pathProblem("/a:b@c!$&'()*+,;=~")).to.equal(undefined);
  });

  it("refuses dot segments, also percent-encoded, and bad percent-escapes", () => {
    for (const p of ["/a/../b", "/a/./b", "/..", "/a/%2e%2e/b", "/a/%2E", "/.%2e/x"]) {
      expect(pathProblem(p), p).to.match(/'\.' or '\.\.' segments/);
    }
    expect(prefixProblem("/static/..")).to.match(/'\.' or '\.\.' segments/);
    expect(pathProblem("/a%zz")).to.match(/percent-escape/);
    // A dot inside a segment is an ordinary character.
    expect(pathProblem("/file.txt/..x")).to.equal(undefined);
  });

  it("refuses unbalanced braces, parameters inside a segment, bad and repeated names", () => {
    expect(pathProblem("/u/{id")).to.match(/unbalanced/);
    expect(pathProblem("/u/id}")).to.match(/unbalanced/);
    expect(pathProblem("/u/{id}x")).to.match(/unbalanced/);
    expect(pathProblem("/u/{{id}}")).to.match(/unbalanced/);
    expect(pathProblem("/u/{}")).to.match(/bad parameter name ""/);
    expect(pathProblem("/u/{1d}")).to.match(/bad parameter name "1d"/);
    expect(pathProblem("/u/{a.b}")).to.match(/bad parameter name/);
    expect(pathProblem("/u/{id}/v/{id}")).to.match(/parameter name "id" twice/);
    expect(prefixProblem("/users/{id}")).to.match(/prefix takes no parameters/);
  });

  it("refuses the gateway's own paths and spaces in any letter case, as path or prefix", () => {
    for (const p of [
      "/healthz",
      "/READYZ",
      "/metrics/",
      "/function/hello",
      "/Function/x/y",
      "/async-function/hello",
      "/ASYNC-FUNCTION",
    ]) {
      expect(pathProblem(p), p).to.match(/gateway's own/);
    }
    for (const p of ["/healthz", "/function", "/function/", "/Async-Function/x", "/metrics/"]) {
      expect(prefixProblem(p), p).to.match(/gateway's own/);
    }
  });

  it("names the field that is wrong", () => {
    expect(routeProblem({ path: "/healthz" })?.field).to.equal("spec.path");
    expect(routeProblem({ prefix: "/healthz" })?.field).to.equal("spec.prefix");
  });
});
