import { expect } from "chai";
import { Codecs, FizzError, subjects, type RegistryChanged } from "@fizz/events";
import { connectNats, listen, request, silentLogger, type NatsConnection } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import {
  envBody,
  fnBody,
  registryEnv,
  startRegistry,
  startStack,
  type Running,
  type Stack,
} from "./helpers";

describe("registry on NATS", () => {
  let stack: Stack;
  let reg: Running;
  let nc: NatsConnection;
  const s = subjects("fizz.v1");
  const events: { subject: string; data: RegistryChanged }[] = [];
  const ask = { sender: "test-1", timeoutMs: 5000 };

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
    listen(
      nc,
      s.registryChangedAll,
      Codecs.registryChanged,
      (data, subject) => void events.push({ subject, data }),
      {
        logger: silentLogger(),
      },
    );
    await nc.flush();
  });
  after(async () => {
    await nc?.close();
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  const next = (n: number) =>
    waitFor(() => events.length >= n && events, { what: `${n} change events` });

  it("publishes created, updated and deleted with the revision and the whole object", async () => {
    const api = reg.api.ns();
    const created = (await api.create("environments", envBody("py"))).body;
    await next(1);
    expect(events[0]?.subject).to.equal("fizz.v1.registry.changed.environments");
    expect(events[0]?.data).to.deep.equal({
      kind: "environments",
      op: "created",
      namespace: "default",
      name: "py",
      revision: 1,
      object: created,
    });

    const updated = (await api.patch("environments", "py", { spec: { poolSize: 1 } })).body;
    await next(2);
    expect(events[1]?.data).to.deep.include({ op: "updated", revision: 2 });
    expect(events[1]?.data.object).to.deep.equal(updated);

    await api.delete("environments", "py");
    await next(3);
    expect(events[2]?.data).to.deep.include({ op: "deleted", revision: 2, name: "py" });
    expect(events[2]?.data.object).to.deep.equal(updated);
  });

  it("publishes functions and triggers on their own kind's subject", async () => {
    const api = reg.api.ns();
    events.length = 0;
    await api.create("environments", envBody("py"));
    await api.create("functions", fnBody("f", "py"));
    await api.create("httptriggers", { name: "t", spec: { function: "f", path: "/t" } });
    await next(3);
    expect(events.map((e) => e.subject)).to.deep.equal([
      "fizz.v1.registry.changed.environments",
      "fizz.v1.registry.changed.functions",
      "fizz.v1.registry.changed.httptriggers",
    ]);
    expect(events[1]?.data.object.spec)
      .to.have.property("code")
      .that.has.keys("filename", "digest", "size");
  });

  it("publishes nothing for a refused write", async () => {
    events.length = 0;
    const res = await reg.api.ns().create("environments", envBody("py"));
    expect(res.status).to.equal(409);
    await reg.api.ns().create("environments", envBody("marker"));
    await next(1);
    expect(events.map((e) => e.data.name)).to.deep.equal(["marker"]);
  });

  it("answers registry.get with the object and NOT_FOUND for a missing one", async () => {
    const reply = await request(
      nc,
      s.registryGet,
      Codecs.registryGet,
      { kind: "functions", namespace: "default", name: "f" },
      ask,
    );
    expect(reply.object.kind).to.equal("Function");
    expect(reply.object.metadata.name).to.equal("f");
    const err = await request(
      nc,
      s.registryGet,
      Codecs.registryGet,
      { kind: "functions", namespace: "default", name: "nope" },
      ask,
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(FizzError);
    expect((err as FizzError).code).to.equal("NOT_FOUND");
  });

  it("answers registry.list for one namespace, or every namespace without one", async () => {
    await reg.api.ns("other").create("environments", envBody("py"));
    const one = await request(
      nc,
      s.registryList,
      Codecs.registryList,
      { kind: "environments", namespace: "default" },
      ask,
    );
    expect(one.items.map((o) => o.metadata.name)).to.deep.equal(["marker", "py"]);
    const all = await request(
      nc,
      s.registryList,
      Codecs.registryList,
      { kind: "environments" },
      ask,
    );
    expect(all.items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`)).to.deep.equal([
      "default/marker",
      "default/py",
      "other/py",
    ]);
  });

  it("answers a malformed request with MALFORMED_MESSAGE instead of a timeout", async () => {
    const err = await request(
      nc,
      s.registryGet,
      Codecs.registryGet,
      { kind: "widgets", namespace: "default", name: "x" },
      ask,
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as FizzError).code).to.equal("MALFORMED_MESSAGE");
  });
});
