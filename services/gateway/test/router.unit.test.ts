import { expect } from "chai";
import {
  Router,
  decodeParam,
  stripPort,
  type FunctionRule,
  type TriggerRule,
} from "../src/front-door/router";

type T = string;

function trigger(id: string, over: Partial<TriggerRule<T>>): TriggerRule<T> {
  return { id, target: id, methods: [], ...over };
}

function fns(...names: string[]): FunctionRule<T>[] {
  return names.map((n) => {
    const [name, namespace = "default"] = n.split(".") as [string, string?];
    return { namespace, name, target: `fn:${namespace}/${name}` };
  });
}

describe("router", () => {
  it("matches an exact path and passes the original path and query", () => {
    const r = new Router([trigger("a", { path: "/hello" })], []);
    const m = r.match("GET", "x", "/hello?q=1");
    expect(m?.target).to.equal("a");
    expect(m?.url).to.equal("/hello?q=1");
    expect(r.match("GET", "x", "/hello/")).to.equal(undefined);
    expect(r.match("GET", "x", "/hell")).to.equal(undefined);
  });

  it("extracts {param} segments as a flat name/value list", () => {
    const r = new Router([trigger("u", { path: "/users/{id}/posts/{post}" })], []);
    const m = r.match("GET", undefined, "/users/42/posts/7?x=1");
    expect(m?.target).to.equal("u");
    expect(m?.params).to.deep.equal(["id", "42", "post", "7"]);
    expect(m?.url).to.equal("/users/42/posts/7?x=1");
    expect(r.match("GET", undefined, "/users//posts/7"), "empty segment").to.equal(undefined);
    expect(r.match("GET", undefined, "/users/42/posts"), "too short").to.equal(undefined);
  });

  it("still matches a parameter whose name cannot be a header name, without sending it", () => {
    const r = new Router([trigger("odd", { path: "/odd/{a:b}/{ok}" })], []);
    expect(r.match("GET", undefined, "/odd/1/2")?.params).to.deep.equal(["ok", "2"]);
  });

  it("decodes parameter values only when the result is safe in a header", () => {
    expect(decodeParam("caf%C3%A9")).to.equal("café");
    expect(decodeParam("a%20b")).to.equal("a b");
    expect(decodeParam("x%0D%0Ay")).to.equal("x%0D%0Ay");
    expect(decodeParam("%E2%82%AC")).to.equal("%E2%82%AC"); // '€' is beyond Latin-1
    expect(decodeParam("%zz")).to.equal("%zz");
  });

  it("matches prefixes on segment boundaries, longest first", () => {
    const r = new Router(
      [
        trigger("api", { prefix: "/api" }),
        trigger("v2", { prefix: "/api/v2/" }),
        trigger("root", { prefix: "/" }),
      ],
      [],
    );
    expect(r.match("GET", undefined, "/api")?.target).to.equal("api");
    expect(r.match("GET", undefined, "/api/users")?.target).to.equal("api");
    expect(r.match("GET", undefined, "/api/v2")?.target).to.equal("v2");
    expect(r.match("GET", undefined, "/api/v2/x?y=1")?.target).to.equal("v2");
    expect(r.match("GET", undefined, "/apix")?.target).to.equal("root");
    expect(r.match("GET", undefined, "/api/v2/x?y=1")?.url).to.equal("/api/v2/x?y=1");
  });

  it("prefers exact over param over prefix", () => {
    const r = new Router(
      [
        trigger("prefix", { prefix: "/users" }),
        trigger("param", { path: "/users/{id}" }),
        trigger("exact", { path: "/users/me" }),
      ],
      [],
    );
    expect(r.match("GET", undefined, "/users/me")?.target).to.equal("exact");
    expect(r.match("GET", undefined, "/users/42")?.target).to.equal("param");
    expect(r.match("GET", undefined, "/users/42/x")?.target).to.equal("prefix");
  });

  it("prefers the param route with a literal segment earlier", () => {
    const r = new Router(
      [trigger("late", { path: "/{a}/b/{c}" }), trigger("early", { path: "/a/{b}/{c}" })],
      [],
    );
    expect(r.match("GET", undefined, "/a/b/c")?.target).to.equal("early");
    expect(r.match("GET", undefined, "/z/b/c")?.target).to.equal("late");
  });

  it("filters by method; empty methods match any", () => {
    const r = new Router(
      [
        trigger("get", { path: "/m", methods: ["GET", "HEAD"] }),
        trigger("post", { path: "/m", methods: ["POST"] }),
      ],
      [],
    );
    expect(r.match("GET", undefined, "/m")?.target).to.equal("get");
    expect(r.match("POST", undefined, "/m")?.target).to.equal("post");
    expect(r.match("DELETE", undefined, "/m")).to.equal(undefined);
    const any = new Router([trigger("any", { path: "/m" })], []);
    expect(any.match("PATCH", undefined, "/m")?.target).to.equal("any");
  });

  it("matches the host without port, case-insensitively, and prefers host-specific triggers", () => {
    const r = new Router(
      [
        trigger("generic", { path: "/h" }),
        trigger("special", { path: "/h", host: "api.example.com" }),
      ],
      [],
    );
    expect(r.usesHost).to.equal(true);
    expect(r.match("GET", "API.example.com:8080", "/h")?.target).to.equal("special");
    expect(r.match("GET", "other.example.com", "/h")?.target).to.equal("generic");
    expect(r.match("GET", undefined, "/h")?.target).to.equal("generic");
    const only = new Router([trigger("special", { prefix: "/", host: "a.test:81" })], []);
    expect(only.match("GET", "a.test", "/x")?.target).to.equal("special");
    expect(only.match("GET", "b.test", "/x")).to.equal(undefined);
  });

  it("routes /function/<name> to the default namespace and rewrites the path", () => {
    const r = new Router([], fns("hello", "hello.prod"));
    expect(r.match("GET", undefined, "/function/hello/a/b?x=1")).to.deep.include({
      target: "fn:default/hello",
      url: "/a/b?x=1",
    });
    expect(r.match("GET", undefined, "/function/hello")).to.deep.include({
      target: "fn:default/hello",
      url: "/",
    });
    expect(r.match("GET", undefined, "/function/hello?x=1")).to.deep.include({
      target: "fn:default/hello",
      url: "/?x=1",
    });
    expect(r.match("POST", undefined, "/function/hello/")).to.deep.include({
      target: "fn:default/hello",
      url: "/",
    });
  });

  it("routes /function/<name>.<ns> to that namespace", () => {
    const r = new Router([], fns("hello", "hello.prod", "other.prod"));
    expect(r.match("GET", undefined, "/function/hello.prod/x")).to.deep.include({
      target: "fn:prod/hello",
      url: "/x",
    });
    expect(r.match("GET", undefined, "/function/hello.default")).to.deep.include({
      target: "fn:default/hello",
      url: "/",
    });
    expect(r.match("GET", undefined, "/function/other"), "not in default").to.equal(undefined);
    expect(r.match("GET", undefined, "/function/missing")).to.equal(undefined);
    expect(r.match("GET", undefined, "/function/hellox")).to.equal(undefined);
  });

  it("gives /function/<existing> precedence over triggers, and lets triggers have unknown /function/ paths", () => {
    const r = new Router([trigger("catchall", { prefix: "/" })], fns("hello"));
    expect(r.match("GET", undefined, "/function/hello/x")?.target).to.equal("fn:default/hello");
    expect(r.match("GET", undefined, "/function/nope")?.target).to.equal("catchall");
    expect(r.match("GET", undefined, "/function/nope")?.url).to.equal("/function/nope");
  });

  it("returns undefined when nothing matches", () => {
    const r = new Router([trigger("a", { path: "/a" })], fns("f"));
    expect(r.match("GET", undefined, "/b")).to.equal(undefined);
    expect(r.match("GET", undefined, "/")).to.equal(undefined);
  });

  it("strips ports from host names and IPv6 literals", () => {
    expect(stripPort("example.com:8080")).to.equal("example.com");
    expect(stripPort("example.com")).to.equal("example.com");
    expect(stripPort("[::1]:80")).to.equal("[::1]");
  });
});
