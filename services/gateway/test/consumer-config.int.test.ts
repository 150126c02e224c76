import { expect } from "chai";
import { Streams } from "@fizz/events";
import { ensureBus } from "@fizz/kit";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { startNats, type TestServer } from "@fizz/testkit";
import { INVOKER_DURABLE } from "../src/bus/invoker/consumer";
import { ensurePullConsumer } from "../src/bus/invoker/puller";
import { subj } from "./harness";

/**
 * The invoker's consumer is durable: one created by an older gateway (30 s ack wait) must be
 * brought to the configured ack wait, or a crashed gateway's calls would keep waiting 30 s.
 */
describe("invoker consumer config (real NATS JetStream)", () => {
  let nats: TestServer;
  let nc: NatsConnection;
  before(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    await ensureBus(nc, subj);
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it("updates an existing consumer's ack wait to the configured one", async () => {
    const jsm = await jetstreamManager(nc);
    await ensurePullConsumer(jsm, Streams.invocations, INVOKER_DURABLE, { ackWaitMs: 30_000 });
    expect(
      (await jsm.consumers.info(Streams.invocations, INVOKER_DURABLE)).config.ack_wait,
    ).to.equal(30_000 * 1_000_000);
    await ensurePullConsumer(jsm, Streams.invocations, INVOKER_DURABLE, { ackWaitMs: 5000 });
    expect(
      (await jsm.consumers.info(Streams.invocations, INVOKER_DURABLE)).config.ack_wait,
    ).to.equal(5000 * 1_000_000);
  });
});
