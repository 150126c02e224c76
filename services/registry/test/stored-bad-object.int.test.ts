import { expect } from "chai";
import { Codecs, redisKeys, subjects } from "@fizz/events";
import { connectNats, request, silentLogger } from "@fizz/kit";
import {
  envBody,
  registryEnv,
  startRegistry,
  startStack,
  type Running,
  type Stack,
} from "./helpers";

/**
 * An object written into Redis behind the registry's back, in a shape no service can read: the
 * registry leaves it out of listings (every service lists on start) instead of failing them all,
 * names it in the bus listing's `skipped` (so services do not take it for deleted), answers a
 * read of that one object with a 500 that says why, and keeps serving.
 */
describe("registry meeting a stored object it cannot read", () => {
  let stack: Stack;
  let reg: Running;
  const keys = redisKeys();

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    const res = await reg.api.ns().create("environments", envBody("python"));
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    await stack.client
      .multi()
      .set(keys.obj("environments", "default", "broken"), '{"kind":"Environment","spec":{}}')
      .sadd(keys.nsIndex("environments", "default"), "broken")
      .sadd(keys.kindIndex("environments"), "default/broken")
      .exec();
  });
  after(async () => {
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  it("lists the readable objects and leaves the unreadable one out, over REST and the bus, where it names it as skipped", async () => {
    const res = await reg.api.ns().list("environments");
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    const names = (res.body.items as { metadata: { name: string } }[]).map((o) => o.metadata.name);
    expect(names).to.deep.equal(["python"]);
    // What every service asks on start, across namespaces.
    const nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
    try {
      const all = await request(
        nc,
        subjects("fizz.v1").registryList,
        Codecs.registryList,
        { kind: "environments" },
        { sender: "test", timeoutMs: 5000 },
      );
      expect(all.items.map((o) => o.metadata.name)).to.deep.equal(["python"]);
      expect(all.skipped).to.deep.equal([{ namespace: "default", name: "broken" }]);
      // One namespace, too.
      const one = await request(
        nc,
        subjects("fizz.v1").registryList,
        Codecs.registryList,
        { kind: "environments", namespace: "default" },
        { sender: "test", timeoutMs: 5000 },
      );
      expect(one.items.map((o) => o.metadata.name)).to.deep.equal(["python"]);
      expect(one.skipped).to.deep.equal([{ namespace: "default", name: "broken" }]);
      // A kind with nothing left out answers as it always did: no `skipped` at all.
      const fns = await request(
        nc,
        subjects("fizz.v1").registryList,
        Codecs.registryList,
        { kind: "functions" },
        { sender: "test", timeoutMs: 5000 },
      );
      expect(fns).to.deep.equal({ items: [] });
    } finally {
      await nc.close();
    }
  });

  it("answers a read of the unreadable object with INTERNAL naming it, and keeps serving writes", async () => {
    const res = await reg.api.ns().get("environments", "broken");
    expect([res.status, res.body.error.code]).to.deep.equal([500, "INTERNAL"]);
    expect(res.body.error.message).to.match(
      /environments:default:broken does not match its schema/,
    );
    const ok = await reg.api
      .ns()
      .create("environments", envBody("node", { image: "fizz/env-node" }));
    expect(ok.status, JSON.stringify(ok.body)).to.equal(201);
  });
});
