import { expect } from "chai";
import { Codecs, redisKeys, subjects } from "@fizz/events";
import { connectNats, request, silentLogger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { fromListIndexMember, listIndexBuiltKey, listIndexKey } from "../src/store-list";
import {
  envBody,
  fnBody,
  registryEnv,
  startRegistry,
  startStack,
  type Running,
  type Stack,
} from "./helpers";

/**
 * The list index (store-list.ts): a sorted set per kind that pages read with ZRANGEBYLEX, kept in
 * the same transaction as every write, built at start-up for older data, and ignored while a
 * registry that predates it leaves it short.
 */
describe("registry list index", () => {
  let stack: Stack;
  let reg: Running;
  const prefix = "fizz:v1:";
  const keys = redisKeys(prefix);

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    for (const ns of ["a", "a-b", "b"]) {
      expect((await reg.api.ns(ns).create("environments", envBody("py"))).status).to.equal(201);
      for (const f of ["f1", "f2", "f3"])
        expect((await reg.api.ns(ns).create("functions", fnBody(f, "py"))).status).to.equal(201);
    }
  });
  after(async () => {
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  const pageAll = async (ns: string, limit: number): Promise<string[]> => {
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const q = `?limit=${limit}${token ? `&continue=${token}` : ""}`;
      const res = await reg.api.call("GET", `/v1/namespaces/${ns}/functions${q}`);
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      const body = res.body as unknown as {
        items: { metadata: { namespace: string; name: string } }[];
        continue?: string;
      };
      seen.push(...body.items.map((i) => `${i.metadata.namespace}/${i.metadata.name}`));
      token = body.continue;
    } while (token);
    return seen;
  };

  /** The sorted set as `ns/name`, in its own (byte) order. */
  const indexed = async () =>
    (await stack.client.zrange(listIndexKey(prefix, "functions"), 0, -1)).map((m) => {
      const c = fromListIndexMember(m);
      return `${c.namespace}/${c.name}`;
    });

  it("keeps every object in the sorted set, in (namespace, name) order, through creates and deletes", async () => {
    expect((await reg.api.ns("b").create("functions", fnBody("f0", "py"))).status).to.equal(201);
    expect((await reg.api.ns("a").delete("functions", "f2")).status).to.be.oneOf([200, 204]);
    const want = ["a/f1", "a/f3", "a-b/f1", "a-b/f2", "a-b/f3", "b/f0", "b/f1", "b/f2", "b/f3"];
    expect(await indexed()).to.deep.equal(want);
    expect(await stack.client.scard(keys.kindIndex("functions"))).to.equal(want.length);
    expect(await stack.client.get(listIndexBuiltKey(prefix))).to.equal("1");
  });

  it("pages one namespace without the namespaces whose names start with it", async () => {
    expect(await pageAll("a", 1)).to.deep.equal(["a/f1", "a/f3"]);
    expect(await pageAll("a-b", 2)).to.deep.equal(["a-b/f1", "a-b/f2", "a-b/f3"]);
  });

  it("keeps a namespace's page in its namespace when the token's cursor names another one", async () => {
    // A token is base64 JSON; one for namespace b's listing whose cursor says a/f1.
    const forged = Buffer.from(
      JSON.stringify({ v: 1, k: "functions", in: "b", ns: "a", name: "f1" }),
    ).toString("base64url");
    const res = await reg.api.call(
      "GET",
      `/v1/namespaces/b/functions?limit=100&continue=${forged}`,
    );
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    const body = res.body as unknown as { items: { metadata: { namespace: string } }[] };
    expect(body.items.length).to.be.greaterThan(0);
    expect([...new Set(body.items.map((i) => i.metadata.namespace))]).to.deep.equal(["b"]);
  });

  it("pages every namespace over NATS in (namespace, name) order across namespace boundaries", async () => {
    const nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
    try {
      const all: string[] = [];
      let token: string | undefined;
      do {
        const reply = await request(
          nc,
          subjects("fizz.v1").registryList,
          Codecs.registryList,
          { kind: "functions", limit: 2, ...(token ? { continue: token } : {}) },
          { sender: "test", timeoutMs: 5000 },
        );
        all.push(...reply.items.map((i) => `${i.metadata.namespace}/${i.metadata.name}`));
        token = reply.continue;
      } while (token);
      expect(all).to.deep.equal(await indexed());
      expect(all.slice(0, 3)).to.deep.equal(["a/f1", "a/f3", "a-b/f1"]);
    } finally {
      await nc.close();
    }
  });

  it("lists objects a registry without the index wrote, and a registry started after the marker is deleted rebuilds it", async () => {
    // What a registry that predates the list index writes: the object and its sets, no sorted set.
    const raw = await stack.client.get(keys.obj("functions", "a", "f1"));
    const old = JSON.parse(raw!) as { metadata: { name: string; uid: string } };
    old.metadata.name = "f9";
    old.metadata.uid = "old-registry-f9";
    await stack.client
      .multi()
      .set(keys.obj("functions", "a", "f9"), JSON.stringify(old))
      .sadd(keys.nsIndex("functions", "a"), "f9")
      .sadd(keys.kindIndex("functions"), "a/f9")
      .exec();
    expect(await indexed()).to.not.include("a/f9");
    expect(await pageAll("a", 1)).to.deep.equal(["a/f1", "a/f3", "a/f9"]);

    await stack.client.del(listIndexBuiltKey(prefix));
    const c = await startRegistry(registryEnv(stack));
    try {
      expect(await stack.client.get(listIndexBuiltKey(prefix))).to.equal("1");
      expect(await indexed()).to.include("a/f9");
      expect(await stack.client.zcard(listIndexKey(prefix, "functions"))).to.equal(
        await stack.client.scard(keys.kindIndex("functions")),
      );
      expect(await pageAll("a", 2)).to.deep.equal(["a/f1", "a/f3", "a/f9"]);
    } finally {
      await c.svc.stop();
    }
  });

  it("builds the index of a kind with more objects than one command's arguments can spread (150,000)", async () => {
    // Only the kind's set matters to the build; config maps are not listed by the other tests.
    const set = keys.kindIndex("configmaps");
    const names = Array.from({ length: 150_000 }, (_, i) => `big/cm${i}`);
    for (let i = 0; i < names.length; i += 10_000)
      await stack.client.sadd(set, ...names.slice(i, i + 10_000));
    await stack.client.del(listIndexBuiltKey(prefix));
    const c = await startRegistry(registryEnv(stack), { ready: false });
    try {
      await waitFor(async () => (await c.api.call("GET", "/readyz")).status === 200, {
        what: "registry ready (its start-up tasks build the list index)",
      });
      expect(await stack.client.zcard(listIndexKey(prefix, "configmaps"))).to.equal(names.length);
      expect(await stack.client.get(listIndexBuiltKey(prefix))).to.equal("1");
    } finally {
      await c.svc.stop();
      await stack.client.del(set, listIndexKey(prefix, "configmaps"));
    }
  });
});
