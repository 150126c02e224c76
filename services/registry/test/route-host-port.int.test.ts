import { expect } from "chai";
import { routeHost } from "@fizz/events";
import { routeIndexKey, routeShape } from "../src/route-index";
import {
  envBody,
  fnBody,
  registryEnv,
  startRegistry,
  startStack,
  triggerBody,
  type Running,
  type Stack,
} from "./helpers";

/**
 * The gateway matches a trigger's host without its port and in any letter case (`routeHost`), so
 * `a.example` and `a.example:8080` are one route there: the registry must refuse the second as a
 * conflict, in either order and by a patch, and its route index must key hosts the same way —
 * rebuilt at start-up from an index that kept ports.
 */
describe("http trigger hosts compared as the gateway matches them", () => {
  let stack: Stack;
  let reg: Running;
  const prefix = "fizz:v1:";

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    for (const ns of ["default", "other"]) {
      expect((await reg.api.ns(ns).create("environments", envBody("py"))).status).to.equal(201);
      expect((await reg.api.ns(ns).create("functions", fnBody("f1", "py"))).status).to.equal(201);
    }
  });
  after(async () => {
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  const create = (ns: string, name: string, spec: Record<string, unknown>) =>
    reg.api.ns(ns).create("httptriggers", triggerBody(name, "f1", spec));

  it("uses the gateway's host rule: case and port ignored, nothing else", () => {
    expect(routeHost("A.Example:8080")).to.equal("a.example");
    expect(routeHost("a.example")).to.equal("a.example");
    expect(routeHost("a.example.")).to.equal("a.example.");
  });

  it("refuses a.example:8080 /x after a.example /x, and the reverse", async () => {
    expect((await create("default", "plain", { path: "/x", host: "a.example" })).status).to.equal(
      201,
    );
    const ported = await create("other", "ported", { path: "/x", host: "a.example:8080" });
    expect(ported.status, JSON.stringify(ported.body)).to.equal(409);
    expect(ported.body.error.code).to.equal("ROUTE_CONFLICT");
    const upper = await create("other", "upper", { path: "/x", host: "A.EXAMPLE:9090" });
    expect(upper.status, JSON.stringify(upper.body)).to.equal(409);

    expect(
      (
        await create("default", "first", {
          path: undefined,
          prefix: "/api",
          host: "b.example:8080",
        })
      ).status,
    ).to.equal(201);
    const bare = await create("other", "bare", {
      path: undefined,
      prefix: "/api/",
      host: "B.example",
    });
    expect(bare.status, JSON.stringify(bare.body)).to.equal(409);
    expect(bare.body.error.code).to.equal("ROUTE_CONFLICT");
    // Another host still is another route.
    expect(
      (await create("other", "elsewhere", { path: "/x", host: "c.example:8080" })).status,
    ).to.equal(201);
  });

  it("refuses a patch moving a trigger's host to the port form of a taken one", async () => {
    expect((await create("default", "mover", { path: "/x", host: "d.example" })).status).to.equal(
      201,
    );
    const moved = await reg.api
      .ns("default")
      .patch("httptriggers", "mover", { spec: { host: "a.example:443" } });
    expect(moved.status, JSON.stringify(moved.body)).to.equal(409);
    expect(moved.body.error.code).to.equal("ROUTE_CONFLICT");
  });

  it("rebuilds an index that kept ports under the gateway's hosts at start-up", async () => {
    // What a registry before the fix left: the trigger under a port-bearing key, old marker set.
    const idx = await stack.client.keys(`${prefix}routeidx:*`);
    if (idx.length > 0) await stack.client.del(...idx);
    await stack.client
      .multi()
      .sadd(`${prefix}routeidx:a.example|path|/x`, "default/plain")
      .sadd(`${prefix}routeidx:b.example:8080|prefix|/api`, "default/first")
      .sadd(`${prefix}routeidx:c.example:8080|path|/x`, "other/elsewhere")
      .sadd(`${prefix}routeidx:d.example|path|/x`, "default/mover")
      .set(`${prefix}routeidx:built`, "1")
      .exec();
    const c = await startRegistry(registryEnv(stack));
    try {
      expect(
        await stack.client.smembers(
          routeIndexKey(prefix, routeShape({ prefix: "/api", host: "b.example" })),
        ),
      ).to.deep.equal(["default/first"]);
      const bare = await c.api
        .ns("other")
        .create(
          "httptriggers",
          triggerBody("bare2", "f1", { path: undefined, prefix: "/api", host: "b.example" }),
        );
      expect(bare.status, JSON.stringify(bare.body)).to.equal(409);
      const c2 = await c.api
        .ns("default")
        .create("httptriggers", triggerBody("c2", "f1", { path: "/x", host: "c.example" }));
      expect(c2.status, JSON.stringify(c2.body)).to.equal(409);
    } finally {
      await c.svc.stop();
    }
  });
});
