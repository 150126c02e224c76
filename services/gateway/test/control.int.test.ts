import http from "node:http";
import { expect } from "chai";
import { connect } from "@nats-io/transport-node";
import { Codecs, type UsageReport } from "@fizz/events";
import { serve, silentLogger } from "@fizz/kit";
import { freePort, startNats, waitFor } from "@fizz/testkit";
import { loadConfig, start } from "../src/index";
import {
  call,
  closeClients,
  functionObject,
  leaseOf,
  startHarness,
  startInstance,
  subj,
  triggerObject,
  type Harness,
  type Instance,
} from "./harness";

describe("gateway control plane (real NATS)", function () {
  this.timeout(30_000);
  let h: Harness;
  const instances: Instance[] = [];
  const instance = async (id: string, handler?: Parameters<typeof startInstance>[1]) => {
    const i = await startInstance(id, handler);
    instances.push(i);
    return i;
  };

  before(async () => {
    h = await startHarness({
      functions: ["hello", "rev", "inst", "report"].map((n) => functionObject(n)),
      triggers: [],
    });
    const hello = await instance("hello-1");
    h.leases.set("hello", () => leaseOf(hello, "hello"));
  });

  after(async () => {
    closeClients();
    await h?.close();
    await Promise.all(instances.map((i) => i.close()));
  });

  it("adds and removes routes at runtime from registry.changed events", async () => {
    const port = h.gateway.port;
    expect((await call(port, "GET", "/greet")).status).to.equal(404);
    const t = triggerObject("greet", { function: "hello", path: "/greet", methods: ["GET"] });
    h.changed({
      kind: "httptriggers",
      op: "created",
      namespace: "default",
      name: "greet",
      object: t,
    });
    await waitFor(async () => (await call(port, "GET", "/greet")).status === 200, {
      what: "the new route",
    });
    expect((await call(port, "POST", "/greet")).status, "method not in the trigger").to.equal(404);

    const fn = functionObject("late");
    const late = await instance("late-1");
    h.leases.set("late", () => leaseOf(late, "late"));
    h.changed({ kind: "functions", op: "created", namespace: "default", name: "late", object: fn });
    await waitFor(async () => (await call(port, "GET", "/function/late")).status === 200, {
      what: "the new function route",
    });

    h.changed({
      kind: "httptriggers",
      op: "deleted",
      namespace: "default",
      name: "greet",
      object: t,
    });
    await waitFor(async () => (await call(port, "GET", "/greet")).status === 404, {
      what: "the route to go",
    });
    h.changed({ kind: "functions", op: "deleted", namespace: "default", name: "late", object: fn });
    await waitFor(async () => (await call(port, "GET", "/function/late")).status === 404, {
      what: "the function route to go",
    });
  });

  it("drops cached leases when the function gets a new revision", async () => {
    const v1 = await instance("rev-1");
    const v2 = await instance("rev-2");
    let revision = 1;
    h.leases.set("rev", () =>
      revision === 1 ? leaseOf(v1, "rev") : leaseOf(v2, "rev", { revision: 2 }),
    );
    expect(
      (await call(h.gateway.port, "GET", "/function/rev")).json<{
        headers: Record<string, string>;
      }>().headers["x-fizz-instance"],
    ).to.equal("rev-1");
    revision = 2;
    h.changed({
      kind: "functions",
      op: "updated",
      namespace: "default",
      name: "rev",
      object: functionObject("rev", "default", 2),
    });
    await waitFor(
      async () => {
        const r = await call(h.gateway.port, "GET", "/function/rev");
        return (
          r.json<{ headers: Record<string, string> }>().headers["x-fizz-function-revision"] === "2"
        );
      },
      { what: "revision 2" },
    );
    expect(h.callsFor("rev")).to.have.length(2);
    // Requests raced with the event may still have reached v1; none may after.
    const v1Hits = v1.hits;
    for (let n = 0; n < 3; n++) await call(h.gateway.port, "GET", "/function/rev");
    expect(v1.hits).to.equal(v1Hits);
    expect(v2.hits).to.be.at.least(4);
  });

  it("drops a cached lease named in a scheduler.instances event", async () => {
    const a = await instance("inst-1");
    const b = await instance("inst-2");
    let n = 0;
    h.leases.set("inst", () => (n++ === 0 ? leaseOf(a, "inst") : leaseOf(b, "inst")));
    await call(h.gateway.port, "GET", "/function/inst");
    await call(h.gateway.port, "GET", "/function/inst");
    expect(a.hits).to.equal(2);
    h.nc.publish(
      subj.schedulerInstances("default", "inst"),
      Codecs.schedulerInstances.encode(
        { namespace: "default", function: "inst", revision: 1, removed: ["inst-1"] },
        "scheduler-test",
      ),
    );
    await waitFor(
      async () => {
        await call(h.gateway.port, "GET", "/function/inst");
        return b.hits > 0;
      },
      { what: "traffic to move to inst-2" },
    );
    expect(h.callsFor("inst")).to.have.length(2);
  });

  it("publishes usage reports for the instances it used", async () => {
    const i = await instance("report-1");
    h.leases.set("report", () => leaseOf(i, "report"));
    const reports: UsageReport[] = [];
    const sub = h.nc.subscribe(subj.schedulerReport, {
      callback: (_err, msg) => {
        reports.push(Codecs.schedulerReport.decode(msg.data).data);
      },
    });
    try {
      for (let n = 0; n < 3; n++) await call(h.gateway.port, "GET", "/function/report");
      // A report may fall between the calls: each counts what was served since the last one.
      const mine = () =>
        reports.flatMap((r) => r.items).filter((it) => it.instanceId === "report-1");
      const served = () => mine().reduce((sum, it) => sum + it.served, 0);
      await waitFor(() => served() >= 3, { what: "reports of the three calls" });
      expect(served()).to.equal(3);
      const item = mine().at(-1)!;
      expect(item).to.include({ namespace: "default", function: "report", inFlight: 0 });
      expect(item.lastUsedAt).to.be.closeTo(Date.now(), 5000);
      expect(reports[0]?.gateway).to.equal(h.gateway.id);
    } finally {
      sub.unsubscribe();
    }
  });

  it("serves /healthz, /readyz and /metrics on the ops port, and on the main port when no route claims them", async () => {
    const ready = await call(h.gateway.opsPort, "GET", "/readyz");
    expect(ready.status).to.equal(200);
    expect(ready.json()).to.deep.include({ checks: { nats: true, routes: true } });
    expect((await call(h.gateway.opsPort, "GET", "/healthz")).status).to.equal(200);
    const metrics = await call(h.gateway.opsPort, "GET", "/metrics");
    expect(metrics.text).to.match(
      /fizz_gateway_requests_total\{function="default\/hello",class="2xx",service="gateway"\} \d+/,
    );
    expect(metrics.text).to.contain("fizz_gateway_request_duration_seconds_bucket");
    expect((await call(h.gateway.port, "GET", "/healthz")).status).to.equal(200);
  });

  it("does not serve a stored trigger that shadows /healthz (the route rules), and keeps serving the others", async () => {
    const t = triggerObject("health", { function: "hello", path: "/healthz" });
    h.changed({
      kind: "httptriggers",
      op: "created",
      namespace: "default",
      name: "health",
      object: t,
    });
    // A later, valid trigger: once it routes, the /healthz one has been seen and left out.
    const after = triggerObject("after-health", { function: "hello", path: "/after-health" });
    h.changed({
      kind: "httptriggers",
      op: "created",
      namespace: "default",
      name: "after-health",
      object: after,
    });
    await waitFor(async () => (await call(h.gateway.port, "GET", "/after-health")).status === 200, {
      what: "the trigger after it",
    });
    const main = await call(h.gateway.port, "GET", "/healthz");
    expect(main.text).not.to.include("x-fizz-instance");
    expect(main.json()).to.deep.equal({ status: "ok" });
    expect((await call(h.gateway.opsPort, "GET", "/healthz")).json()).to.deep.equal({
      status: "ok",
    });
  });
});

describe("gateway lifecycle (real NATS)", function () {
  this.timeout(30_000);

  it("is not ready until the registry answers, then loads its routes", async () => {
    const nats = await startNats();
    const nc = await connect({ servers: nats.url });
    const gw = await start(loadConfig({ FIZZ_NATS_URL: nats.url, FIZZ_GATEWAY_PORT: "0" }), {
      logger: silentLogger(),
    });
    try {
      const notReady = await call(gw.opsPort, "GET", "/readyz");
      expect(notReady.status).to.equal(503);
      const early = await call(gw.port, "GET", "/function/x");
      expect(early.status).to.equal(503);
      expect(early.json<{ error: { code: string } }>().error.code).to.equal("UNAVAILABLE");
      serve(nc, subj.registryList, Codecs.registryList, () => Promise.resolve({ items: [] }), {
        sender: "registry-test",
        logger: silentLogger(),
      });
      await gw.ready;
      expect((await call(gw.opsPort, "GET", "/readyz")).status).to.equal(200);
      expect((await call(gw.port, "GET", "/function/x")).status).to.equal(404);
    } finally {
      closeClients();
      await gw.stop();
      await nc.close();
      await nats.cleanup();
    }
  });

  it("answers /healthz but not /readyz while NATS is away, and becomes ready once it appears", async () => {
    const [natsPort, opsPort] = [await freePort(), await freePort()];
    const starting = start(
      loadConfig({
        FIZZ_NATS_URL: `nats://127.0.0.1:${natsPort}`,
        FIZZ_GATEWAY_PORT: "0",
        FIZZ_GATEWAY_OPS_PORT: String(opsPort),
      }),
      { logger: silentLogger() },
    );
    const status = (path: string) =>
      call(opsPort, "GET", path).then(
        (r) => r.status,
        () => 0,
      );
    await waitFor(async () => (await status("/healthz")) === 200, { what: "the ops port" });
    expect(await status("/readyz")).to.equal(503);
    const nats = await startNats({ port: natsPort });
    const gw = await starting;
    try {
      const nc = await connect({ servers: nats.url });
      serve(nc, subj.registryList, Codecs.registryList, () => Promise.resolve({ items: [] }), {
        sender: "registry-test",
        logger: silentLogger(),
      });
      await gw.ready;
      await waitFor(async () => (await status("/readyz")) === 200, { what: "ready" });
      await nc.close();
    } finally {
      closeClients();
      await gw.stop();
      await nats.cleanup();
    }
  });

  it("stops gracefully: an in-flight request finishes, new connections are refused", async () => {
    const slow = await startInstance("slow-1", (_req, res) =>
      setTimeout(() => res.end("done"), 300),
    );
    const h = await startHarness({ functions: [functionObject("slow")], triggers: [] });
    h.leases.set("slow", () => leaseOf(slow, "slow"));
    try {
      const inflight = new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = http.get(
          { host: "127.0.0.1", port: h.gateway.port, path: "/function/slow", agent: false },
          (res) => {
            let text = "";
            res.on("data", (c: Buffer) => (text += c.toString()));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
          },
        );
        req.on("error", reject);
      });
      await waitFor(() => slow.hits === 1, { what: "the request at the instance" });
      const stopped = h.gateway.stop();
      expect(await inflight).to.deep.equal({ status: 200, text: "done" });
      await stopped;
      const refused = await call(h.gateway.port, "GET", "/function/slow").then(
        () => false,
        () => true,
      );
      expect(refused).to.equal(true);
    } finally {
      closeClients();
      await h.close();
      await slow.close();
    }
  });
});
