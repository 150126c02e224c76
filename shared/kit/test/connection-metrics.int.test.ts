import { expect } from "chai";
import { startNats, startRedis, waitFor, type TestServer } from "@fizz/testkit";
import { connectNats, connectRedis, createMetricsRegistry, silentLogger } from "../src/index";

/** The value of one connection's series in the exposition, or undefined when it is not there. */
async function value(
  registry: ReturnType<typeof createMetricsRegistry>,
  name: string,
  connection: string,
): Promise<number | undefined> {
  const line = (await registry.metrics())
    .split("\n")
    .find((l) => l.startsWith(`${name}{`) && l.includes(`connection="${connection}"`));
  return line === undefined ? undefined : Number(line.split(" ").at(-1));
}

/**
 * Every service's /metrics says whether its NATS and Redis connections are up: real servers are
 * stopped and started again under live clients.
 */
describe("connection metrics (real nats-server and redis-server)", function () {
  this.timeout(60_000);
  let nats: TestServer;
  let redis: TestServer;
  const registry = createMetricsRegistry("test");

  before(async () => {
    nats = await startNats();
    redis = await startRedis();
  });
  after(async () => {
    await nats?.cleanup();
    await redis?.cleanup();
  });

  it("shows NATS connected, 0 while the server is down, and counts the loss and the reconnect", async () => {
    expect(await value(registry, "fizz_nats_connected", "metrics-test-nats")).to.equal(undefined);
    const nc = await connectNats({
      url: nats.url,
      name: "metrics-test-nats",
      logger: silentLogger(),
    });
    try {
      expect(await value(registry, "fizz_nats_connected", "metrics-test-nats")).to.equal(1);
      const lost = (await value(registry, "fizz_nats_disconnects_total", "metrics-test-nats")) ?? 0;
      const back = (await value(registry, "fizz_nats_reconnects_total", "metrics-test-nats")) ?? 0;
      await nats.stop();
      await waitFor(
        async () => (await value(registry, "fizz_nats_connected", "metrics-test-nats")) === 0,
        {
          what: "nats disconnected",
          timeoutMs: 20_000,
        },
      );
      expect(await value(registry, "fizz_nats_disconnects_total", "metrics-test-nats")).to.equal(
        lost + 1,
      );
      await nats.restart();
      await waitFor(
        async () => (await value(registry, "fizz_nats_connected", "metrics-test-nats")) === 1,
        {
          what: "nats reconnected",
          timeoutMs: 30_000,
        },
      );
      expect(await value(registry, "fizz_nats_reconnects_total", "metrics-test-nats")).to.equal(
        back + 1,
      );
    } finally {
      await nc.close();
    }
    // A closed connection is not an outage: no gauge left that an alert would read as one.
    await waitFor(
      async () => (await value(registry, "fizz_nats_connected", "metrics-test-nats")) === undefined,
      {
        what: "nats gauge gone",
      },
    );
  });

  it("shows Redis connected, 0 while the server is down, and counts the loss and the reconnect", async () => {
    expect(await value(registry, "fizz_redis_connected", "metrics-test-redis")).to.equal(undefined);
    const client = connectRedis({
      url: redis.url,
      name: "metrics-test-redis",
      logger: silentLogger(),
    });
    try {
      await waitFor(
        async () => (await value(registry, "fizz_redis_connected", "metrics-test-redis")) === 1,
        {
          what: "redis connected",
        },
      );
      const lost =
        (await value(registry, "fizz_redis_disconnects_total", "metrics-test-redis")) ?? 0;
      const back =
        (await value(registry, "fizz_redis_reconnects_total", "metrics-test-redis")) ?? 0;
      await redis.stop();
      await waitFor(
        async () => (await value(registry, "fizz_redis_connected", "metrics-test-redis")) === 0,
        {
          what: "redis disconnected",
          timeoutMs: 20_000,
        },
      );
      expect(await value(registry, "fizz_redis_disconnects_total", "metrics-test-redis")).to.equal(
        lost + 1,
      );
      await redis.restart();
      await waitFor(
        async () => (await value(registry, "fizz_redis_connected", "metrics-test-redis")) === 1,
        {
          what: "redis reconnected",
          timeoutMs: 30_000,
        },
      );
      expect(await value(registry, "fizz_redis_reconnects_total", "metrics-test-redis")).to.equal(
        back + 1,
      );
    } finally {
      await client.quit();
    }
    await waitFor(
      async () =>
        (await value(registry, "fizz_redis_connected", "metrics-test-redis")) === undefined,
      {
        what: "redis gauge gone",
      },
    );
  });
});
