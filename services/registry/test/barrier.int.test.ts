import { expect } from "chai";
import { Codecs, subjects, type GatewaySyncRequest } from "@fizz/events";
import { connectNats, silentLogger, type NatsConnection } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import {
  b64,
  envBody,
  fnBody,
  registryEnv,
  startRegistry,
  startStack,
  type Running,
  type Stack,
} from "./helpers";

const s = subjects("fizz.v1");
const SYNC_TIMEOUT_MS = 800;

interface FakeGateway {
  id: string;
  /** Sync requests seen, with when they arrived and when they were answered. */
  seen: { req: GatewaySyncRequest; at: number; answeredAt?: number }[];
  /** Announces a 1 ms interval (what a stopping gateway does) and stops answering. */
  leave(): void;
}

/**
 * A gateway played over real NATS: it beats on gateway.presence and answers gateway.sync after
 * `delayMs` (or never).
 */
function fakeGateway(
  nc: NatsConnection,
  id: string,
  opts: { delayMs?: number; answers?: boolean; intervalMs?: number; beats?: boolean } = {},
): FakeGateway {
  const { delayMs = 0, answers = true, intervalMs = 200, beats = true } = opts;
  const seen: FakeGateway["seen"] = [];
  const sub = nc.subscribe(s.gatewaySync, {
    callback: (_err, msg) => {
      const entry: FakeGateway["seen"][number] = {
        req: Codecs.gatewaySync.request.decode(msg.data).data,
        at: Date.now(),
      };
      seen.push(entry);
      if (!answers) return;
      setTimeout(() => {
        entry.answeredAt = Date.now();
        msg.respond(Codecs.gatewaySync.reply.encode({ gateway: id, applied: true }, id));
      }, delayMs);
    },
  });
  const beat = (every: number) =>
    nc.publish(
      s.gatewayPresence,
      Codecs.gatewayPresence.encode({ gateway: id, intervalMs: every }, id),
    );
  beat(intervalMs);
  const timer = beats ? setInterval(() => beat(intervalMs), intervalMs) : undefined;
  return {
    id,
    seen,
    leave() {
      clearInterval(timer);
      beat(1);
      sub.unsubscribe();
    },
  };
}

describe("registry update barrier (real NATS)", function () {
  this.timeout(30_000);
  let stack: Stack;
  let reg: Running;
  let nc: NatsConnection;
  const fakes: FakeGateway[] = [];
  let probes = 0;

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(
      registryEnv(stack, { FIZZ_SYNC_TIMEOUT_MS: String(SYNC_TIMEOUT_MS) }),
    );
    nc = await connectNats({ url: stack.nats.url, name: "test", logger: silentLogger() });
    const api = reg.api.ns();
    await api.create("environments", envBody("py"));
    await api.create("functions", fnBody("hello", "py"));
  });
  afterEach(async () => {
    for (const f of fakes.splice(0)) f.leave();
    await nc.flush();
  });
  after(async () => {
    await nc?.close();
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  const gateway = (id: string, opts?: Parameters<typeof fakeGateway>[2]) => {
    const g = fakeGateway(nc, id, opts);
    fakes.push(g);
    return g;
  };
  /** Writes until every fake was asked: the registry has heard their presence. */
  const known = (...gs: FakeGateway[]) =>
    waitFor(
      async () => {
        await reg.api.ns().patch("functions", "hello", { labels: { probe: String(probes++) } });
        return gs.every((g) => g.seen.length > 0);
      },
      { what: "the registry to know the gateways" },
    );
  const timed = async <T>(p: Promise<T>): Promise<{ value: T; at: number; ms: number }> => {
    const t0 = Date.now();
    const value = await p;
    return { value, at: Date.now(), ms: Date.now() - t0 };
  };

  it("answers a function update only after every live gateway confirmed it, event first", async () => {
    const slow = gateway("gw-slow", { delayMs: 300 });
    const fast = gateway("gw-fast");
    await known(slow, fast);
    const events: number[] = [];
    const evSub = nc.subscribe(s.registryChanged("functions"), {
      callback: () => void events.push(Date.now()),
    });
    await nc.flush();
    slow.seen.length = 0;
    const code = { filename: "hello.py", content: b64('def main():\n    return "v2"\n') };
    const res = await timed(reg.api.ns().patch("functions", "hello", { spec: { code } }));
    evSub.unsubscribe();
    expect(res.value.status).to.equal(200);
    const sync = slow.seen[0];
    expect(sync?.req).to.deep.equal({
      kind: "functions",
      op: "updated",
      namespace: "default",
      name: "hello",
      revision: res.value.body.metadata.revision,
      uid: res.value.body.metadata.uid,
    });
    expect(sync?.answeredAt, "the slow gateway answered").to.be.a("number");
    expect(res.at, "the PATCH answered after the slow gateway").to.be.at.least(
      sync?.answeredAt ?? Infinity,
    );
    expect(events[0], "the change event went out before the sync").to.be.at.most(sync?.at ?? 0);
  });

  it("does not hang on a live gateway that never answers: the write answers at FIZZ_SYNC_TIMEOUT_MS, committed", async () => {
    const dead = gateway("gw-dead", { answers: false });
    await known(dead);
    const res = await timed(reg.api.ns().patch("functions", "hello", { labels: { v: "timeout" } }));
    expect(res.value.status).to.equal(200);
    expect(res.ms).to.be.at.least(SYNC_TIMEOUT_MS - 50);
    expect(res.ms).to.be.below(SYNC_TIMEOUT_MS * 5);
    const got = await reg.api.ns().get("functions", "hello");
    expect(got.body.metadata.labels).to.deep.equal({ v: "timeout" });
  });

  it("stops waiting for a gateway that missed three of its presence intervals", async () => {
    const silent = gateway("gw-silent", { answers: false, intervalMs: 100, beats: false });
    await nc.flush();
    await new Promise((r) => setTimeout(r, 400));
    const res = await timed(reg.api.ns().patch("functions", "hello", { labels: { v: "silent" } }));
    expect(res.value.status).to.equal(200);
    expect(res.ms, "not held for the forgotten gateway").to.be.below(SYNC_TIMEOUT_MS - 200);
    expect(silent.seen, "no live gateway: no sync asked").to.have.length(0);
  });

  it("stops waiting at once for a gateway that announced it is leaving", async () => {
    const leaving = gateway("gw-leaving", { answers: false, intervalMs: 60_000 });
    await known(leaving);
    leaving.leave();
    await nc.flush();
    const res = await timed(reg.api.ns().patch("functions", "hello", { labels: { v: "left" } }));
    expect(res.ms).to.be.below(SYNC_TIMEOUT_MS - 200);
  });

  it("syncs HTTP trigger and function creates and deletes, but not environment writes", async () => {
    const g = gateway("gw-kinds");
    await known(g);
    g.seen.length = 0;
    const api = reg.api.ns();
    await api.patch("environments", "py", { spec: { poolSize: 2 } });
    await api.create("functions", fnBody("other", "py"));
    await api.create("httptriggers", { name: "t", spec: { function: "other", path: "/t" } });
    await api.delete("httptriggers", "t");
    await api.delete("functions", "other");
    expect(g.seen.map((e) => `${e.req.kind} ${e.req.op} ${e.req.name}`)).to.deep.equal([
      "functions created other",
      "httptriggers created t",
      "httptriggers deleted t",
      "functions deleted other",
    ]);
  });
});
