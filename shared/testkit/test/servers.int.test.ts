import { expect } from "chai";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Redis } from "ioredis";
import { startNats, startRedis, type TestServer } from "@fizz/testkit";

describe("testkit servers", () => {
  let nats: TestServer;
  let redis: TestServer;
  before(async () => {
    [nats, redis] = await Promise.all([startNats(), startRedis()]);
  });
  after(async () => {
    await Promise.all([nats?.cleanup(), redis?.cleanup()]);
  });

  it("starts a nats-server with JetStream on a random port, not the standard one", async () => {
    expect(nats.port).to.not.equal(4222);
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.getAccountInfo();
    expect(info.streams).to.equal(0);
    await nc.close();
  });

  it("starts a redis-server that keeps data across a restart", async () => {
    expect(redis.port).to.not.equal(6379);
    const r = new Redis(redis.url, { maxRetriesPerRequest: 50 });
    await r.set("k", "v");
    await redis.restart();
    expect(await r.get("k")).to.equal("v");
    r.disconnect();
  });
});
