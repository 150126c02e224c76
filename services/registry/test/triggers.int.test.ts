import { expect } from "chai";
import { Codecs, subjects, type RegistryChanged } from "@fizz/events";
import { connectNats, listen, request, silentLogger, type NatsConnection } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import {
  envBody,
  fnBody,
  mqtBody,
  registryEnv,
  snapshot,
  startRegistry,
  startStack,
  timerBody,
  watchBody,
  type Running,
  type Stack,
} from "./helpers";

/** Message-queue, timer and watch triggers through the same REST API as every other kind. */
describe("registry bus triggers (mqtriggers, timetriggers, watchtriggers)", () => {
  let stack: Stack;
  let reg: Running;
  let nc: NatsConnection;
  const s = subjects("fizz.v1");
  const events: { subject: string; data: RegistryChanged }[] = [];

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
    listen(
      nc,
      s.registryChangedAll,
      Codecs.registryChanged,
      (data, subject) => void events.push({ subject, data }),
      { logger: silentLogger() },
    );
    await nc.flush();
    const d = reg.api.ns();
    for (const res of [
      await d.create("environments", envBody("python")),
      await d.create("functions", fnBody("hello", "python")),
      await d.create("functions", fnBody("other", "python")),
    ]) {
      expect(res.status, JSON.stringify(res.body)).to.equal(201);
    }
  });
  after(async () => {
    await nc?.close();
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  const api = () => reg.api.ns();
  const kindEvents = (kind: string) =>
    events.filter((e) => e.subject === `fizz.v1.registry.changed.${kind}`);

  const kinds = [
    {
      kind: "mqtriggers",
      Kind: "MessageQueueTrigger",
      body: mqtBody("orders", "hello", { queueGroup: "workers", stream: "ORDERS" }),
      defaults: { maxRetries: 3, contentType: "application/json" },
      patch: { subject: "orders.created", responseSubject: "orders.done", maxRetries: 5 },
      unset: { queueGroup: null },
    },
    {
      kind: "timetriggers",
      Kind: "TimeTrigger",
      body: timerBody("nightly", "hello", { cron: "0 3 * * *" }),
      defaults: { method: "POST", contentType: "application/json" },
      patch: { cron: "@every 30s", body: '{"report":true}' },
      unset: { body: null },
    },
    {
      kind: "watchtriggers",
      Kind: "WatchTrigger",
      body: watchBody("pods", "hello", { labels: "app=web" }),
      defaults: { events: ["ADDED", "MODIFIED", "DELETED"] },
      patch: { resource: "deployments.apps", events: ["DELETED"] },
      unset: { labels: null },
    },
  ] as const;

  for (const k of kinds) {
    it(`creates, gets, lists, updates and deletes ${k.kind}, publishing each change`, async () => {
      events.length = 0;
      const created = await api().create(k.kind, k.body);
      expect(created.status, JSON.stringify(created.body)).to.equal(201);
      expect(created.body.kind).to.equal(k.Kind);
      expect(created.body.metadata).to.include({ name: k.body.name, revision: 1 });
      expect(created.body.spec).to.deep.equal({ ...k.defaults, ...k.body.spec });

      const got = await api().get(k.kind, k.body.name);
      expect(got.body).to.deep.equal(created.body);
      const listed = await api().list(k.kind);
      expect(listed.body.items).to.deep.equal([created.body]);

      const updated = await api().patch(k.kind, k.body.name, { spec: k.patch, revision: 1 });
      expect(updated.status, JSON.stringify(updated.body)).to.equal(200);
      expect(updated.body.metadata.revision).to.equal(2);
      expect(updated.body.spec).to.deep.include(k.patch);
      const unset = await api().patch(k.kind, k.body.name, { spec: k.unset });
      expect(unset.status, JSON.stringify(unset.body)).to.equal(200);
      expect(unset.body.spec).to.not.have.property(Object.keys(k.unset)[0] ?? "");

      const deleted = await api().delete(k.kind, k.body.name);
      expect(deleted.status).to.equal(200);
      expect(deleted.body).to.deep.equal(unset.body);
      expect((await api().get(k.kind, k.body.name)).status).to.equal(404);

      await waitFor(() => kindEvents(k.kind).length >= 4, { what: `4 ${k.kind} events` });
      expect(kindEvents(k.kind).map((e) => [e.data.op, e.data.revision])).to.deep.equal([
        ["created", 1],
        ["updated", 2],
        ["updated", 3],
        ["deleted", 3],
      ]);
      expect(kindEvents(k.kind)[0]?.data.object).to.deep.equal(created.body);
    });
  }

  it("serves the new kinds on registry.get and registry.list", async () => {
    await api().create("timetriggers", timerBody("tick", "hello"));
    const ask = { sender: "test-1", timeoutMs: 5000 };
    const got = await request(
      nc,
      s.registryGet,
      Codecs.registryGet,
      { kind: "timetriggers", namespace: "default", name: "tick" },
      ask,
    );
    expect(got.object.kind).to.equal("TimeTrigger");
    const all = await request(
      nc,
      s.registryList,
      Codecs.registryList,
      { kind: "timetriggers" },
      ask,
    );
    expect(all.items.map((o) => o.metadata.name)).to.deep.equal(["tick"]);
    await api().delete("timetriggers", "tick");
  });

  it("refuses deleting a function a timer uses, naming the timer, and allows it once it is gone", async () => {
    await api().create("timetriggers", timerBody("every-5", "other"));
    await api().create("mqtriggers", mqtBody("jobs", "other"));
    const before = await snapshot(stack.client);

    const refused = await api().delete("functions", "other");
    expect(refused.status).to.equal(409);
    expect(refused.body.error.code).to.equal("IN_USE");
    expect(refused.body.error.message).to.equal(
      'function "default/other" is used by mqtriggers "jobs" and timetriggers "every-5"; delete or change them first',
    );
    expect(await snapshot(stack.client)).to.deep.equal(before);

    await api().delete("timetriggers", "every-5");
    await api().patch("mqtriggers", "jobs", { spec: { function: "hello" } });
    expect((await api().delete("functions", "other")).status).to.equal(200);
    await api().delete("mqtriggers", "jobs");
  });

  it("lets two mq triggers share a subject when their queue groups differ (each gets every message)", async () => {
    const a = await api().create("mqtriggers", mqtBody("fan-a", "hello", { subject: "fan.out" }));
    const b = await api().create("mqtriggers", mqtBody("fan-b", "hello", { subject: "fan.out" }));
    expect([a.status, b.status]).to.deep.equal([201, 201]);
    await api().delete("mqtriggers", "fan-a");
    await api().delete("mqtriggers", "fan-b");
  });

  it("accepts a watch of another namespace only when the registry runs with FIZZ_WATCH_CLUSTER_SCOPE=true", async () => {
    const body = watchBody("kube-system-pods", "hello", {}, "kube-system");
    const refused = await api().create("watchtriggers", body);
    expect(refused.status).to.equal(400);
    expect(refused.body.error).to.include({ code: "VALIDATION_FAILED", field: "spec.namespace" });
    expect(refused.body.error.message).to.include(
      "a watch trigger may only watch its own namespace (default); cross-namespace watches need FIZZ_WATCH_CLUSTER_SCOPE=true on the registry",
    );

    const wide = await startRegistry(registryEnv(stack, { FIZZ_WATCH_CLUSTER_SCOPE: "true" }));
    try {
      const res = await wide.api.ns().create("watchtriggers", body);
      expect(res.status, JSON.stringify(res.body)).to.equal(201);
      expect(res.body.spec.namespace).to.equal("kube-system");
    } finally {
      await wide.svc.stop();
    }
    await api().delete("watchtriggers", body.name);
  });

  it("reserves the configured subject prefix, not a fixed one", async () => {
    const custom = await startRegistry(registryEnv(stack, { FIZZ_SUBJECT_PREFIX: "acme.faas" }));
    try {
      const d = custom.api.ns();
      const refused = await d.create("mqtriggers", mqtBody("x", "hello", { subject: "acme.*.>" }));
      expect(refused.body.error).to.include({ code: "VALIDATION_FAILED", field: "spec.subject" });
      expect(refused.body.error.message).to.include("acme.faas.>");
      const ok = await d.create("mqtriggers", mqtBody("y", "hello", { subject: "fizz.v1.thing" }));
      expect(ok.status, JSON.stringify(ok.body)).to.equal(201);
      await d.delete("mqtriggers", "y");
    } finally {
      await custom.svc.stop();
    }
  });
});
