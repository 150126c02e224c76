import { expect } from "chai";
import { Codecs, redisKeys, subjects, type FizzError, type HttpTrigger } from "@fizz/events";
import { connectNats, request, silentLogger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { findRouteConflict } from "../src/route-conflict";
import { memberOf, routeIndexKey, routeShape } from "../src/route-index";
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
 * The route index under attack: writers on several connections and replicas moving, creating and
 * deleting triggers over a few routes; the index's built marker lost; a stored trigger the
 * registry cannot read; continue tokens of another listing.
 */
describe("route index and list pages under attack", () => {
  let stack: Stack;
  let a: Running;
  let b: Running;
  const prefix = "fizz:v1:";
  const keys = redisKeys(prefix);

  before(async () => {
    stack = await startStack();
    [a, b] = await Promise.all([
      startRegistry(registryEnv(stack)),
      startRegistry(registryEnv(stack)),
    ]);
    expect((await a.api.ns().create("environments", envBody("py"))).status).to.equal(201);
    for (const f of ["f1", "f2"])
      expect((await a.api.ns().create("functions", fnBody(f, "py"))).status).to.equal(201);
  });
  after(async () => {
    await Promise.all([a?.svc.stop(), b?.svc.stop()]);
    await stack?.cleanup();
  });

  async function storedTriggers(): Promise<HttpTrigger[]> {
    const out: HttpTrigger[] = [];
    for (const n of ["default", "other"]) {
      const res = await a.api.ns(n).list("httptriggers");
      expect(res.status).to.equal(200);
      out.push(...(res.body.items as unknown as HttpTrigger[]));
    }
    return out;
  }

  /** No two stored triggers claim one request, and each is in its shape's index set. */
  async function checkInvariants(what: string): Promise<void> {
    const all = await storedTriggers();
    for (const t of all) {
      const other = findRouteConflict(t, all);
      expect(other, `${what}: ${memberOf(t)} conflicts with ${other && memberOf(other)}`).to.equal(
        undefined,
      );
      const set = routeIndexKey(prefix, routeShape(t.spec));
      expect(
        await stack.client.sismember(set, memberOf(t)),
        `${what}: ${memberOf(t)} in ${set}`,
      ).to.equal(1);
    }
  }

  it("keeps one trigger per route while writers on both replicas move, create and delete", async () => {
    const routes = ["/r/a", "/r/b", "/r/c"];
    const ns = ["default", "other"];
    for (const n of ns.slice(1)) {
      expect((await a.api.ns(n).create("environments", envBody("py"))).status).to.equal(201);
      for (const f of ["f1", "f2"])
        expect((await a.api.ns(n).create("functions", fnBody(f, "py"))).status).to.equal(201);
    }
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const pick = <V>(xs: readonly V[]): V => xs[Math.floor(rand() * xs.length)]!;
    for (let round = 0; round < 12; round++) {
      const ops = Array.from({ length: 10 }, () => {
        const api = pick([a, b]).api.ns(pick(ns));
        const name = `t${Math.floor(rand() * 4)}`;
        const path = pick(routes);
        const methods = rand() < 0.5 ? [] : [pick(["GET", "POST"])];
        const r = rand();
        if (r < 0.4) return api.create("httptriggers", triggerBody(name, "f1", { path, methods }));
        if (r < 0.8)
          return api.patch("httptriggers", name, {
            spec: { path, methods, function: pick(["f1", "f2"]) },
          });
        return api.delete("httptriggers", name);
      });
      const results = await Promise.all(ops);
      for (const res of results)
        expect([200, 201, 404, 409], JSON.stringify(res.body)).to.include(res.status);
      await checkInvariants(`round ${round}`);
    }
  });

  it("still refuses a taken route after Redis lost the index and its marker, and rebuilds it at start", async () => {
    expect(
      (await a.api.ns().create("httptriggers", triggerBody("keep", "f1", { path: "/keep" })))
        .status,
    ).to.equal(201);
    // The index as a registry predating it left Redis: no marker, no sets.
    const idx = await stack.client.keys(`${prefix}routeidx:*`);
    if (idx.length > 0) await stack.client.del(...idx);
    const clash = await b.api
      .ns("other")
      .create("httptriggers", triggerBody("keep2", "f1", { path: "/keep" }));
    expect(clash.status).to.equal(409);
    // A trigger created meanwhile is indexed by its own write.
    expect(
      (await a.api.ns().create("httptriggers", triggerBody("late", "f1", { path: "/late" })))
        .status,
    ).to.equal(201);
    const c = await startRegistry(registryEnv(stack));
    try {
      expect(await stack.client.get(`${prefix}routeidx:built:v2`)).to.equal("1");
      await checkInvariants("after the rebuild");
      expect(
        (await c.api.ns("other").create("httptriggers", triggerBody("k3", "f1", { path: "/keep" })))
          .status,
      ).to.equal(409);
    } finally {
      await c.svc.stop();
    }
  });

  it("becomes ready and builds the index with a stored trigger it cannot read", async () => {
    expect(
      (await a.api.ns().create("httptriggers", triggerBody("good", "f1", { path: "/good" })))
        .status,
    ).to.equal(201);
    // Written behind the registry's back (a newer registry's shape, say), before the index exists.
    await stack.client
      .multi()
      .set(
        keys.obj("httptriggers", "default", "broken"),
        JSON.stringify({ kind: "HttpTrigger", spec: { path: "/broken", future: true } }),
      )
      .sadd(keys.nsIndex("httptriggers", "default"), "broken")
      .sadd(keys.kindIndex("httptriggers"), "default/broken")
      .exec();
    const idx = await stack.client.keys(`${prefix}routeidx:*`);
    if (idx.length > 0) await stack.client.del(...idx);
    const c = await startRegistry(registryEnv(stack), { ready: false });
    try {
      await waitFor(async () => (await c.api.call("GET", "/readyz")).status === 200, {
        what: "registry ready with an unreadable trigger stored",
        timeoutMs: 10_000,
      });
      expect(await stack.client.get(`${prefix}routeidx:built:v2`)).to.equal("1");
      expect(
        (await c.api.ns("other").create("httptriggers", triggerBody("g2", "f1", { path: "/good" })))
          .status,
      ).to.equal(409);
    } finally {
      await c.svc.stop();
      await stack.client
        .multi()
        .del(keys.obj("httptriggers", "default", "broken"))
        .srem(keys.nsIndex("httptriggers", "default"), "broken")
        .srem(keys.kindIndex("httptriggers"), "default/broken")
        .exec();
    }
  });

  it("refuses a continue token of another kind or of a narrower listing, naming `continue`", async () => {
    const page = (path: string) => a.api.call("GET", path);
    const fns = await page("/v1/namespaces/default/functions?limit=1");
    const token = (fns.body as unknown as { continue?: string }).continue;
    expect(token).to.be.a("string");
    for (const path of [
      `/v1/namespaces/default/environments?limit=1&continue=${token}`,
      `/v1/namespaces/default/httptriggers?limit=1&continue=${token}`,
    ]) {
      const res = await page(path);
      expect(res.status, path).to.equal(400);
      expect(res.body.error.field, path).to.equal("continue");
    }
    // A namespace's token continuing a listing of every namespace would skip those before it.
    const nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
    try {
      const err = await request(
        nc,
        subjects("fizz.v1").registryList,
        Codecs.registryList,
        { kind: "functions", limit: 1, continue: token! },
        { sender: "test", timeoutMs: 5000 },
      ).then(
        () => undefined,
        (e: unknown) => e as FizzError,
      );
      expect(err?.code).to.equal("VALIDATION_FAILED");
      expect(err?.field).to.equal("continue");
    } finally {
      await nc.close();
    }
    // Its own listing takes it.
    expect(
      (await page(`/v1/namespaces/default/functions?limit=1&continue=${token}`)).status,
    ).to.equal(200);
  });
});
