import { expect } from "chai";
import { API_VERSION, type HttpTrigger, type HttpTriggerSpec } from "@fizz/events";
import {
  describeRoute,
  findRouteConflict,
  methodsOverlap,
  normalizePrefix,
  pathShape,
  routeKey,
  routesConflict,
} from "../src/route-conflict";

function trigger(name: string, spec: Partial<HttpTriggerSpec>, namespace = "default"): HttpTrigger {
  return {
    apiVersion: API_VERSION,
    kind: "HttpTrigger",
    metadata: { namespace, name, uid: name, revision: 1, labels: {}, createdAt: "", updatedAt: "" },
    spec: { function: "fn", methods: [], ...spec },
  };
}

const conflict = (a: Partial<HttpTriggerSpec>, b: Partial<HttpTriggerSpec>) =>
  routesConflict(routeKey({ methods: [], ...a }), routeKey({ methods: [], ...b }));

describe("route conflicts", () => {
  it("ignores parameter names when comparing path shapes", () => {
    expect(pathShape("/u/{id}/posts/{post}")).to.equal("/u/{}/posts/{}");
    expect(conflict({ path: "/u/{id}" }, { path: "/u/{x}" })).to.equal(true);
  });

  it("keeps a literal segment apart from a parameter", () => {
    expect(conflict({ path: "/u/me" }, { path: "/u/{id}" })).to.equal(false);
    expect(conflict({ path: "/u/{id}" }, { path: "/u/{id}/x" })).to.equal(false);
  });

  it("treats an empty method list as every method", () => {
    expect(methodsOverlap([], ["GET"])).to.equal(true);
    expect(methodsOverlap(["POST"], [])).to.equal(true);
    expect(methodsOverlap(["GET", "PUT"], ["PUT"])).to.equal(true);
    expect(methodsOverlap(["GET"], ["POST"])).to.equal(false);
  });

  it("compares methods case-insensitively", () => {
    expect(
      conflict({ path: "/a", methods: ["get"] as never }, { path: "/a", methods: ["GET"] }),
    ).to.equal(true);
  });

  it("separates routes on different hosts but not on hosts differing only in case", () => {
    expect(conflict({ path: "/a", host: "a.example.com" }, { path: "/a" })).to.equal(false);
    expect(
      conflict({ path: "/a", host: "a.example.com" }, { path: "/a", host: "b.example.com" }),
    ).to.equal(false);
    expect(
      conflict({ path: "/a", host: "A.example.com" }, { path: "/a", host: "a.example.com" }),
    ).to.equal(true);
  });

  it("finds two equal prefixes, with or without a trailing slash", () => {
    expect(normalizePrefix("/api/")).to.equal("/api");
    expect(normalizePrefix("/")).to.equal("/");
    expect(normalizePrefix("//")).to.equal("/");
    expect(conflict({ prefix: "/api" }, { prefix: "/api/" })).to.equal(true);
  });

  it("lets nested prefixes and a path next to a prefix coexist", () => {
    expect(conflict({ prefix: "/api" }, { prefix: "/api/v1" })).to.equal(false);
    expect(conflict({ prefix: "/api" }, { path: "/api" })).to.equal(false);
  });

  it("skips the trigger itself and names the other one", () => {
    const mine = trigger("mine", { path: "/x/{a}" });
    expect(findRouteConflict(mine, [mine])).to.equal(undefined);
    const other = trigger("mine", { path: "/x/{b}" }, "other-ns");
    expect(findRouteConflict(mine, [mine, other])?.metadata.namespace).to.equal("other-ns");
  });

  it("describes a route for error messages", () => {
    expect(describeRoute({ function: "f", path: "/u/{id}", methods: ["GET", "POST"] })).to.equal(
      "GET,POST /u/{id}",
    );
    expect(describeRoute({ function: "f", prefix: "/api", methods: [], host: "h.io" })).to.equal(
      "* h.io/api*",
    );
  });
});
