import { expect } from "chai";
import { Codecs, subjects, type GatewaySyncRequest } from "@fizz/events";
import { connectNats, silentLogger, type NatsConnection } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import {
  envBody,
  fnBody,
  mqtBody,
  registryEnv,
  startRegistry,
  startStack,
  timerBody,
  watchBody,
  type Running,
  type Stack,
} from "./helpers";

const s = subjects("fizz.v1");
const ANSWER_DELAY_MS = 300;

/**
 * Gateways subscribe to mq trigger subjects, so an mq trigger write waits for them (gateway.sync)
 * like a function or route write; timers (scheduler) and watches (kubewatcher) do not.
 */
describe("registry update barrier for bus triggers (real NATS)", () => {
  let stack: Stack;
  let reg: Running;
  let nc: NatsConnection;
  const seen: GatewaySyncRequest[] = [];
  let beat: NodeJS.Timeout | undefined;

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack, { FIZZ_SYNC_TIMEOUT_MS: "5000" }));
    nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
    // A gateway played over NATS: beats on gateway.presence, answers gateway.sync after a delay.
    nc.subscribe(s.gatewaySync, {
      callback: (_err, msg) => {
        seen.push(Codecs.gatewaySync.request.decode(msg.data).data);
        setTimeout(
          () =>
            msg.respond(Codecs.gatewaySync.reply.encode({ gateway: "gw", applied: true }, "gw")),
          ANSWER_DELAY_MS,
        );
      },
    });
    const announce = () =>
      nc.publish(
        s.gatewayPresence,
        Codecs.gatewayPresence.encode({ gateway: "gw", intervalMs: 200 }, "gw"),
      );
    announce();
    beat = setInterval(announce, 200);
    const api = reg.api.ns();
    await api.create("environments", envBody("py"));
    await api.create("functions", fnBody("hello", "py"));
    await waitFor(
      async () => {
        await api.patch("functions", "hello", { labels: { probe: String(Date.now()) } });
        return seen.length > 0;
      },
      { what: "the registry to know the gateway" },
    );
  });
  after(async () => {
    clearInterval(beat);
    await nc?.close();
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  it("answers an mq trigger write only after the gateway confirmed it", async () => {
    seen.length = 0;
    const t0 = Date.now();
    const res = await reg.api.ns().create("mqtriggers", mqtBody("orders", "hello"));
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    expect(Date.now() - t0).to.be.at.least(ANSWER_DELAY_MS - 20);
    expect(seen).to.deep.equal([
      {
        kind: "mqtriggers",
        op: "created",
        namespace: "default",
        name: "orders",
        revision: 1,
        uid: (res.body as { metadata: { uid: string } }).metadata.uid,
      },
    ]);
  });

  it("answers timer and watch writes without asking the gateways", async () => {
    seen.length = 0;
    const api = reg.api.ns();
    expect((await api.create("timetriggers", timerBody("tick", "hello"))).status).to.equal(201);
    expect((await api.create("watchtriggers", watchBody("pods", "hello"))).status).to.equal(201);
    await nc.flush();
    expect(seen).to.deep.equal([]);
  });
});
