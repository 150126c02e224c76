import { expect } from "chai";
import {
  Codecs,
  FizzError,
  STATS_LATENCY_BOUNDS_MS,
  type GatewayStatsReply,
  type GatewayStatsRequest,
} from "@fizz/events";
import { request, silentLogger } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { loadConfig, start, type Gateway } from "../src/index";
import {
  call,
  closeClients,
  functionObject,
  leaseOf,
  startHarness,
  startInstance,
  subj,
  type Harness,
  type Instance,
} from "./harness";

/**
 * `gateway.stats` over a real nats-server: every gateway answers a request-many with the hour of
 * history of the functions it served, HTTP answers counted by the proxy as they happen.
 */
describe("gateway.stats responder (real NATS)", function () {
  this.timeout(60_000);
  let h: Harness;
  let second: Gateway;
  const instances: Instance[] = [];

  before(async () => {
    h = await startHarness({
      functions: ["hot", "boom"].map((n) => functionObject(n)),
      triggers: [],
    });
    second = await start(loadConfig({ FIZZ_NATS_URL: h.nats.url, FIZZ_GATEWAY_PORT: "0" }), {
      logger: silentLogger(),
    });
    await second.ready;
    const hot = await startInstance("hot-1");
    const boom = await startInstance("boom-1", (_req, res) => {
      res.writeHead(500, { "content-length": "4" });
      res.end("boom");
    });
    instances.push(hot, boom);
    h.leases.set("hot", () => leaseOf(hot, "hot"));
    h.leases.set("boom", () => leaseOf(boom, "boom"));
  });
  after(async () => {
    closeClients();
    await second?.stop();
    await h?.close();
    await Promise.all(instances.map((i) => i.close()));
  });

  /** What the registry does: ask every gateway, take the answers that come within the wait. */
  async function askAll(req: GatewayStatsRequest): Promise<GatewayStatsReply[]> {
    const replies: GatewayStatsReply[] = [];
    const it = await h.nc.requestMany(
      subj.gatewayStats,
      Codecs.gatewayStats.request.encode(req, "registry-test"),
      { strategy: "count", maxMessages: 2, maxWait: 10_000 },
    );
    for await (const m of it) replies.push(Codecs.gatewayStats.reply.decode(m.data).data);
    return replies;
  }
  const totals = (r: GatewayStatsReply | undefined, name: string) => {
    const f = r?.functions.find((x) => x.namespace === "default" && x.name === name);
    if (!f) return undefined;
    const latency = new Array<number>(STATS_LATENCY_BOUNDS_MS.length + 1).fill(0);
    for (const b of f.buckets) b.latency.forEach((n, i) => (latency[i] = (latency[i] ?? 0) + n));
    return {
      count: f.buckets.reduce((a, b) => a + b.count, 0),
      errors: f.buckets.reduce((a, b) => a + b.errors, 0),
      latency: latency.reduce((a, b) => a + b, 0),
    };
  };

  it("answers from every gateway, each with the calls it served: counts, 5xx as errors, latencies", async () => {
    for (let i = 0; i < 3; i++)
      expect((await call(h.gateway.port, "GET", "/function/hot")).status).to.equal(200);
    for (let i = 0; i < 2; i++)
      expect((await call(h.gateway.port, "GET", "/function/boom")).status).to.equal(500);
    const replies = await askAll({ namespace: "default", name: "hot" });
    expect(replies.map((r) => r.gateway).sort()).to.deep.equal([h.gateway.id, second.id].sort());
    const first = replies.find((r) => r.gateway === h.gateway.id);
    expect(totals(first, "hot")).to.deep.equal({ count: 3, errors: 0, latency: 3 });
    const boom = (await askAll({ namespace: "default", name: "boom" })).find(
      (r) => r.gateway === h.gateway.id,
    );
    expect(totals(boom, "boom")).to.deep.equal({ count: 2, errors: 2, latency: 2 });
    expect(replies.find((r) => r.gateway === second.id)?.functions).to.deep.equal([]);
    for (const b of first?.functions[0]?.buckets ?? []) {
      expect(b.t % 10_000).to.equal(0);
      expect(b.t).to.be.at.most(first?.now ?? 0);
    }
  });

  it("answers for the one function asked about, never the others", async () => {
    const replies = await askAll({ namespace: "default", name: "boom" });
    const first = replies.find((r) => r.gateway === h.gateway.id);
    expect(first?.functions.map((f) => f.name)).to.deep.equal(["boom"]);
  });

  it("refuses a malformed request with an error naming the field", async () => {
    const err = await request(
      h.nc,
      subj.gatewayStats,
      Codecs.gatewayStats,
      { namespace: "Not_A_Label", name: "x" },
      { sender: "registry-test", timeoutMs: 10_000 },
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(FizzError);
    expect((err as FizzError).code).to.equal("MALFORMED_MESSAGE");
    expect((err as FizzError).message).to.contain("namespace");
  });

  it("forgets a deleted function: no history and no metric series once the registry says so", async () => {
    h.changed({
      kind: "functions",
      op: "deleted",
      namespace: "default",
      name: "hot",
      object: functionObject("hot"),
    });
    await waitFor(
      async () => {
        const replies = await askAll({ namespace: "default", name: "hot" });
        const first = replies.find((r) => r.gateway === h.gateway.id);
        return first !== undefined && totals(first, "hot") === undefined;
      },
      { what: "hot forgotten", timeoutMs: 20_000 },
    );
    const text = await (await fetch(`http://127.0.0.1:${h.gateway.opsPort}/metrics`)).text();
    expect(text).not.to.match(/fizz_function_invocations_total\{[^}]*function="hot"/);
    expect(text).to.match(
      /fizz_function_invocations_total\{namespace="default",function="boom",trigger="http",status="5xx"[^}]*\} 2/,
    );
  });
});
