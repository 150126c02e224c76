import { expect } from "chai";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Codecs } from "@fizz/events";
import { listen, publish, request, serve, silentLogger, type Subscription } from "@fizz/kit";
import { startNats, type TestServer } from "@fizz/testkit";

/**
 * Events and requests on one connection are handled in the order they arrived: the registry's
 * update barrier publishes a change event and then asks, and a gateway answers from the state the
 * event left (services/gateway/src/front-door/routes.ts sync). With the event's handler a
 * microtask late, the question found the state without it.
 */
describe("listen and serve on one connection (real NATS)", function () {
  this.timeout(30_000);
  let nats: TestServer;
  let sender: NatsConnection;
  let receiver: NatsConnection;
  const subs: Subscription[] = [];
  const log = silentLogger();
  before(async () => {
    nats = await startNats();
    [sender, receiver] = await Promise.all([
      connect({ servers: nats.url }),
      connect({ servers: nats.url }),
    ]);
  });
  after(async () => {
    for (const s of subs) s.unsubscribe();
    await Promise.all([sender?.close(), receiver?.close()]);
    await nats?.cleanup();
  });

  it("runs an event's handler before a request that arrived after it is served", async () => {
    const applied = new Set<string>();
    subs.push(
      listen(
        receiver,
        "t.beats",
        Codecs.gatewayPresence,
        ({ gateway }) => void applied.add(gateway),
        { logger: log },
      ),
      serve(
        receiver,
        "t.ask",
        Codecs.gatewaySync,
        (req) => Promise.resolve({ gateway: "g", applied: applied.has(req.name) }),
        { sender: "g", logger: log },
      ),
    );
    await receiver.flush();
    for (let i = 0; i < 20; i++) {
      const name = `n${i}`;
      // Published then asked at once: both reach the receiver in one read, in this order.
      publish(sender, "t.beats", Codecs.gatewayPresence, { gateway: name, intervalMs: 1 }, "t");
      const reply = await request(
        sender,
        "t.ask",
        Codecs.gatewaySync,
        { kind: "functions", op: "created", namespace: "default", name, revision: 1 },
        { sender: "t", timeoutMs: 5000 },
      );
      expect(reply.applied, name).to.equal(true);
    }
  });

  it("keeps handling events after a handler threw or rejected", async () => {
    const seen: string[] = [];
    subs.push(
      listen(
        receiver,
        "t.flaky",
        Codecs.gatewayPresence,
        ({ gateway }) => {
          seen.push(gateway);
          if (gateway === "throws") throw new Error("sync failure");
          if (gateway === "rejects") return Promise.reject(new Error("async failure"));
        },
        { logger: log },
      ),
    );
    await receiver.flush();
    for (const g of ["throws", "rejects", "after"])
      publish(sender, "t.flaky", Codecs.gatewayPresence, { gateway: g, intervalMs: 1 }, "t");
    await sender.flush();
    const end = Date.now() + 5000;
    while (seen.length < 3 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    expect(seen).to.deep.equal(["throws", "rejects", "after"]);
  });
});
