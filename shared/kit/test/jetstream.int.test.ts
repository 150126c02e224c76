import { expect } from "chai";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Streams, subjects, type Invocation } from "@fizz/events";
import { ensureBus, publishInvocation } from "@fizz/kit";
import { startNats, type TestServer } from "@fizz/testkit";

describe("JetStream bus objects", () => {
  let nats: TestServer;
  let nc: NatsConnection;
  const s = subjects();
  const inv = (callId: string): Invocation => ({
    callId,
    namespace: "default",
    function: "hello",
    source: "async",
    method: "POST",
    path: "/",
    headers: {},
    body: "",
    maxRetries: 3,
    createdAt: Date.now(),
  });

  before(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
  });
  after(async () => {
    await nc?.close();
    await nats?.cleanup();
  });

  it("creates the streams and the call-status bucket, and is idempotent", async () => {
    await ensureBus(nc, s);
    await ensureBus(nc, s);
    const jsm = await jetstreamManager(nc);
    const names = (await jsm.streams.names().next()).sort();
    expect(names).to.include.members([Streams.invocations, Streams.dead, "KV_fizz_calls"]);
    const info = await jsm.streams.info(Streams.invocations);
    expect(info.config.subjects).to.deep.equal(["fizz.v1.invoke.>"]);
    expect(info.config.retention).to.equal("workqueue");
  });

  it("stores an invocation once even when its publisher retries", async () => {
    const { js } = await ensureBus(nc, s);
    await publishInvocation(js, s, inv("call-1"), "test");
    await publishInvocation(js, s, inv("call-1"), "test");
    await publishInvocation(js, s, inv("call-2"), "test");
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info(Streams.invocations)).state.messages).to.equal(2);
  });

  it("keeps stored invocations across a nats-server restart", async () => {
    await nc.close();
    await nats.restart();
    nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info(Streams.invocations)).state.messages).to.equal(2);
  });
});
