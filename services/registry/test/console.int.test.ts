import {
  Codecs,
  STATS_BUCKET_SECONDS,
  STATS_LATENCY_BOUNDS_MS,
  subjects,
  type Instance,
} from "@fizz/events";
import { connectNats, serve, silentLogger, type NatsConnection } from "@fizz/kit";
import { expect } from "chai";
import {
  envBody,
  fnBody,
  READ_TOKEN,
  registryEnv,
  startRegistry,
  startStack,
  triggerBody,
  type Running,
  type Stack,
} from "./helpers";

const S = subjects("fizz.v1");
const SLOTS = STATS_LATENCY_BOUNDS_MS.length + 1;

function instance(id: string, state: "warm" | "specialized", fn?: string): Instance {
  return {
    id,
    address: `http://127.0.0.1:1/${id}`,
    environment: { namespace: "default", name: "python" },
    state,
    backend: "process",
    startedAt: 1,
    ...(fn ? { function: { namespace: "default", name: fn, revision: 1 }, specializedAt: 2 } : {}),
  };
}

describe("registry console endpoints (real NATS and Redis; gateways and poolkeeper answer on the bus)", function () {
  this.timeout(60_000);
  let stack: Stack;
  let reg: Running;
  let nc: NatsConnection;
  let beat: NodeJS.Timeout | undefined;

  before(async () => {
    stack = await startStack();
    reg = await startRegistry(registryEnv(stack));
    const api = reg.api.ns();
    expect((await api.create("environments", envBody("python"))).status).to.equal(201);
    expect((await api.create("functions", fnBody("hello", "python"))).status).to.equal(201);
    expect((await api.create("httptriggers", triggerBody("hello-route", "hello"))).status).to.equal(
      201,
    );
    expect(
      (
        await api.create("timetriggers", {
          name: "tick",
          spec: { function: "hello", cron: "@every 1m" },
        })
      ).status,
    ).to.equal(201);

    nc = await connectNats({ url: stack.nats.url, name: "test-stand-ins", logger: silentLogger() });
    const logger = silentLogger();
    // Two gateways with their own history of default/hello, announced as live.
    const now = Date.now();
    const t = now - (now % (STATS_BUCKET_SECONDS * 1000));
    const latency = (i: number, n: number) => {
      const l = new Array<number>(SLOTS).fill(0);
      l[i] = n;
      return l;
    };
    for (const [gw, count, errors, slot] of [
      ["gw-1", 30, 3, 3],
      ["gw-2", 10, 0, 3],
    ] as const) {
      serve(
        nc,
        S.gatewayStats,
        Codecs.gatewayStats,
        (req) =>
          Promise.resolve({
            gateway: gw,
            now,
            functions:
              req.namespace === "default" && req.name === "hello"
                ? [
                    {
                      namespace: "default",
                      name: "hello",
                      buckets: [{ t, count, errors, latency: latency(slot, count) }],
                    },
                  ]
                : [],
          }),
        { sender: gw, logger },
      );
    }
    const announce = () => {
      for (const gw of ["gw-1", "gw-2"])
        nc.publish(
          S.gatewayPresence,
          Codecs.gatewayPresence.encode({ gateway: gw, intervalMs: 1000 }, gw),
        );
    };
    announce();
    beat = setInterval(announce, 500);
    serve(
      nc,
      S.poolkeeperList,
      Codecs.poolkeeperList,
      () =>
        Promise.resolve({
          instances: [
            instance("w1", "warm"),
            instance("w2", "warm"),
            instance("s1", "specialized", "hello"),
          ],
        }),
      { sender: "poolkeeper-test", logger },
    );
    await nc.flush();
  });

  after(async () => {
    clearInterval(beat);
    await nc?.close();
    await reg?.svc.stop();
    await stack?.cleanup();
  });

  it("lists every function with its environment, routes, triggers, revision and instances", async () => {
    const res = await reg.api.call("GET", "/v1/console/functions");
    expect(res.status).to.equal(200);
    expect(res.body.items).to.deep.equal([
      {
        namespace: "default",
        name: "hello",
        revision: 1,
        environment: "python",
        routes: [{ trigger: "hello-route", path: "/hello-route", methods: [] }],
        routesTotal: 1,
        routesMore: false,
        triggers: [{ kind: "timetriggers", name: "tick", cron: "@every 1m" }],
        triggersTotal: 1,
        triggersMore: false,
        instances: { specialized: 1, current: 1 },
      },
    ]);
  });

  it("groups the poolkeeper's instances by environment into pools", async () => {
    const res = await reg.api.call("GET", "/v1/pools");
    expect(res.status).to.equal(200);
    expect(res.body.items).to.deep.equal([
      {
        namespace: "default",
        name: "python",
        warm: 2,
        specialized: 1,
        total: 3,
        backend: "process",
      },
    ]);
  });

  it("lists a function's instances, and 404 for a function that does not exist", async () => {
    const res = await reg.api.call("GET", "/v1/namespaces/default/functions/hello/instances");
    expect(res.status).to.equal(200);
    expect(res.body.items.map((i) => (i as unknown as { id: string }).id)).to.deep.equal(["s1"]);
    const missing = await reg.api.call("GET", "/v1/namespaces/default/functions/nope/instances");
    expect(missing.status).to.equal(404);
  });

  it("merges both gateways' buckets into rps, errors and percentiles", async () => {
    const res = await reg.api.call("GET", "/v1/namespaces/default/functions/hello/stats");
    expect(res.status).to.equal(200);
    const body = res.body as unknown as {
      gateways: string[];
      points: {
        count: number;
        errors: number;
        rps: number;
        p50: number | null;
        p99: number | null;
      }[];
    };
    expect(body.gateways).to.deep.equal(["gw-1", "gw-2"]);
    const busy = body.points.filter((p) => p.count > 0);
    expect(busy).to.have.length(1);
    // 40 answers, all in the 5-10 ms bucket (bound index 3).
    expect(busy[0]).to.deep.include({
      count: 40,
      errors: 3,
      rps: 40 / STATS_BUCKET_SECONDS,
      p50: 7.5,
    });
  });

  it("lets the read-only token see the console's data; no token gets 401", async () => {
    const read = reg.api.as(READ_TOKEN);
    expect((await read.call("GET", "/v1/pools")).status).to.equal(200);
    expect(
      (await read.call("GET", "/v1/namespaces/default/functions/hello/stats")).status,
    ).to.equal(200);
    expect((await read.call("GET", "/v1/console/functions")).status).to.equal(200);
    const nobody = reg.api.as(null);
    for (const [m, p] of [
      ["GET", "/v1/console/functions"],
      ["GET", "/v1/pools"],
      ["GET", "/v1/namespaces/default/functions/hello/stats"],
      ["GET", "/v1/namespaces/default/functions/hello/instances"],
    ] as const)
      expect((await nobody.call(m, p)).status, p).to.equal(401);
  });

  // Last: it adds a second namespace to what the tests above list exactly.
  it("keeps functions of the same name in two namespaces apart, and lists an idle environment's pool", async () => {
    const b = reg.api.ns("team-b");
    expect((await b.create("environments", envBody("node"))).status).to.equal(201);
    expect((await b.create("functions", fnBody("hello", "node"))).status).to.equal(201);
    const list = await reg.api.call("GET", "/v1/console/functions");
    const items = list.body.items as unknown as {
      namespace: string;
      name: string;
      environment: string;
      instances: { specialized: number };
    }[];
    expect(
      items.map((i) => [i.namespace, i.name, i.environment, i.instances.specialized]),
    ).to.have.deep.members([
      ["default", "hello", "python", 1],
      ["team-b", "hello", "node", 0],
    ]);
    const pools = await reg.api.call("GET", "/v1/pools");
    expect(pools.body.items).to.deep.equal([
      {
        namespace: "default",
        name: "python",
        warm: 2,
        specialized: 1,
        total: 3,
        backend: "process",
      },
      { namespace: "team-b", name: "node", warm: 0, specialized: 0, total: 0 },
    ]);
    const inst = await reg.api.call("GET", "/v1/namespaces/team-b/functions/hello/instances");
    expect(inst.body.items).to.deep.equal([]);
  });
});
