import { expect } from "chai";
import { Codecs, objectSchemas, redisKeys, subjects, type KindPlural } from "@fizz/events";
import { connectNats, silentLogger, type NatsConnection } from "@fizz/kit";
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
 * Listings splice each stored object's JSON into their answer (store-parse.ts KnownJson) instead
 * of parsing, checking and encoding it on every page: the bytes must stay what encoding the parsed
 * objects gave — for objects this registry wrote, for objects it did not (an older shape the
 * schema fills in, a copy it never checked), the first time and once known — and an object
 * changed behind its back must be checked again.
 */
describe("registry listings answered from the stored JSON", () => {
  let stack: Stack;
  let reg: Running;
  let nc: NatsConnection;
  const keys = redisKeys();
  const subject = subjects("fizz.v1").registryList;

  /** An older stored shape: no `methods` (default []), keys out of order, a host in capitals. */
  const older = {
    kind: "HttpTrigger",
    apiVersion: "fizz.dev/v1",
    spec: { path: "/older", function: "f1", host: "Example.COM" },
    metadata: {
      name: "older",
      namespace: "default",
      uid: "u-older",
      revision: 1,
      labels: {},
      createdAt: "2026-01-01T00:00:00.000Z",
      updatedAt: "2026-01-01T00:00:00.000Z",
    },
  };

  const store = async (kind: KindPlural, name: string, raw: string) => {
    await stack.client
      .multi()
      .set(keys.obj(kind, "default", name), raw)
      .sadd(keys.nsIndex(kind, "default"), name)
      .sadd(keys.kindIndex(kind), `default/${name}`)
      .zadd(keys.listIndex(kind), 0, `default\0${name}`)
      .exec();
  };

  /** What the registry answered before: every stored object parsed, then encoded. */
  const parsedItems = async (kind: KindPlural) => {
    const names = (await stack.client.smembers(keys.nsIndex(kind, "default"))).sort();
    const raws = await stack.client.mget(...names.map((n) => keys.obj(kind, "default", n)));
    return raws.map((raw) => objectSchemas[kind].parse(JSON.parse(raw!)));
  };

  const busText = async (req: { kind: KindPlural; limit?: number; continue?: string }) => {
    const msg = await nc.request(subject, Codecs.registryList.request.encode(req, "test"), {
      timeout: 5000,
    });
    return new TextDecoder().decode(msg.data).replace(/"ts":\d+/, '"ts":0');
  };

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    expect((await reg.api.ns().create("environments", envBody("py"))).status).to.equal(201);
    for (const f of ["f1", "f2"])
      expect((await reg.api.ns().create("functions", fnBody(f, "py"))).status).to.equal(201);
    const t = await reg.api.ns().create("httptriggers", triggerBody("t1", "f1"));
    expect(t.status, JSON.stringify(t.body)).to.equal(201);
    await store("httptriggers", "older", JSON.stringify(older));
    // A canonical copy this registry never wrote nor checked.
    const t1 = (await stack.client.get(keys.obj("httptriggers", "default", "t1")))!;
    await store("httptriggers", "t2", t1.replaceAll('"t1"', '"t2"').replace("/t1", "/t2"));
    nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
  });
  after(async () => {
    await nc?.close();
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  it("answers the bytes the parsed objects encode to, over REST and the bus, first time and again", async () => {
    for (const kind of ["functions", "httptriggers"] as const) {
      const items = await parsedItems(kind);
      expect(items.length).to.be.greaterThan(1);
      for (let pass = 0; pass < 2; pass++) {
        const all = await reg.api.ns().list(kind);
        expect(all.headers.get("content-type")).to.equal("application/json; charset=utf-8");
        expect(all.bytes.toString("utf8")).to.equal(JSON.stringify({ items }));
        // Pages of one: each with its token, the last without.
        let token: string | undefined;
        for (const [i, item] of items.entries()) {
          const q = `?limit=1${token ? `&continue=${token}` : ""}`;
          const page = await reg.api.call("GET", `/v1/namespaces/default/${kind}${q}`);
          token = (page.body as unknown as { continue?: string }).continue;
          expect(token === undefined).to.equal(i === items.length - 1);
          expect(page.bytes.toString("utf8")).to.equal(
            JSON.stringify({ items: [item], ...(token ? { continue: token } : {}) }),
          );
        }
        const encoded = (data: unknown) =>
          new TextDecoder()
            .decode(Codecs.registryList.reply.encode(data as never, reg.svc.sender))
            .replace(/"ts":\d+/, '"ts":0');
        expect(await busText({ kind })).to.equal(encoded({ items }));
        const first = await busText({ kind, limit: 1 });
        const next = (JSON.parse(first) as { data: { continue: string } }).data.continue;
        expect(first).to.equal(encoded({ items: [items[0]], continue: next }));
      }
    }
    // The older shape is answered filled in, as the schema reads it.
    const older = (await parsedItems("httptriggers")).find((t) => t.metadata.name === "older");
    expect(older?.spec).to.deep.equal({
      function: "f1",
      path: "/older",
      methods: [],
      host: "example.com",
    });
  });

  it("checks an object again once it changed behind the registry's back", async () => {
    const key = keys.obj("functions", "default", "f2");
    const good = (await stack.client.get(key))!;
    expect((await reg.api.ns().list("functions")).body.items).to.have.length(2);
    await stack.client.set(key, good.replace('"environment":"py"', '"environment":"NOT A LABEL"'));
    try {
      const names = (await reg.api.ns().list("functions")).body.items.map((o) => o.metadata.name);
      expect(names).to.deep.equal(["f1"]);
      const reply = JSON.parse(await busText({ kind: "functions", limit: 10 })) as {
        data: { items: unknown[]; skipped?: unknown };
      };
      expect(reply.data.items).to.have.length(1);
      expect(reply.data.skipped).to.deep.equal([{ namespace: "default", name: "f2" }]);
    } finally {
      await stack.client.set(key, good);
    }
  });

  it("lists a kind with more objects than one command's arguments can spread (150,000)", async () => {
    // The namespace's set names 150,000 objects; three are stored (the rest read as deleted).
    const ns = "big";
    const set = keys.nsIndex("configmaps", ns);
    const names = Array.from({ length: 150_000 }, (_, i) => `cm${i}`);
    const pipe = stack.client.pipeline();
    for (let i = 0; i < names.length; i += 10_000) pipe.sadd(set, ...names.slice(i, i + 10_000));
    await pipe.exec();
    try {
      for (const name of ["cm1", "cm149999", "cm7"]) {
        const res = await reg.api.ns(ns).create("configmaps", { name, spec: { data: {} } });
        expect(res.status, JSON.stringify(res.body)).to.equal(201);
      }
      const res = await reg.api.ns(ns).list("configmaps");
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      expect(res.body.items.map((o) => o.metadata.name)).to.deep.equal(["cm1", "cm149999", "cm7"]);
    } finally {
      await stack.client.del(set);
    }
  });
});
