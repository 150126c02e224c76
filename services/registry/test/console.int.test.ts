import http from "node:http";
import type { AddressInfo } from "node:net";
import {
  Codecs,
  STATS_BUCKET_SECONDS,
  STATS_LATENCY_BOUNDS_MS,
  subjects,
  type Instance,
} from "@fizz/events";
import { connectNats, serve, silentLogger, type NatsConnection } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
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

/** What the stand-in gateway (a plain HTTP server) received. */
interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function listen(handler: http.RequestListener): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer(handler);
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }),
    ),
  );
}

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
  let gateway: { server: http.Server; url: string };
  let elsewhere: { server: http.Server; url: string };
  const seen: Seen[] = [];
  const seenElsewhere: string[] = [];
  const dripClosed: string[] = [];
  let beat: NodeJS.Timeout | undefined;

  before(async () => {
    stack = await startStack();
    gateway = await listen((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
        if (req.url?.includes("/binary")) {
          res.writeHead(200, { "content-type": "application/octet-stream" });
          return void res.end(Buffer.from([0xff, 0x00, 0xfe]));
        }
        if (req.url?.includes("/big")) {
          res.writeHead(200, { "content-type": "text/plain" });
          return void res.end("x".repeat(3 * 1024 * 1024));
        }
        if (req.url?.includes("/never")) return; // answers nothing: the invoke timeout ends it
        if (req.url?.includes("/drip")) {
          // Headers at once, then a byte now and then, forever: only the whole-call bound ends it.
          res.writeHead(200, { "content-type": "text/plain" });
          const drip = setInterval(() => res.write("x"), 50);
          res.on("close", () => {
            clearInterval(drip);
            dripClosed.push(req.url ?? "");
          });
          return;
        }
        if (req.url?.includes("/cookie")) {
          res.writeHead(200, {
            "content-type": "text/html",
            "set-cookie": "session=stolen; Path=/",
          });
          return void res.end("<script>parent.pwned = 1</script>");
        }
        res.writeHead(201, {
          "content-type": "text/plain",
          "x-fizz-instance": "inst-1",
          "x-answer": "yes",
          connection: "close",
        });
        res.end(`you said ${body}`);
      });
    });
    elsewhere = await listen((req, res) => {
      seenElsewhere.push(req.url ?? "");
      res.end("elsewhere");
    });
    reg = await startRegistry(
      registryEnv(stack, {
        FIZZ_GATEWAY_URL: gateway.url,
        FIZZ_CONSOLE_INVOKE_TIMEOUT_MS: "1500",
      }),
    );
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
    gateway?.server.close();
    elsewhere?.server.close();
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
        triggers: [{ kind: "timetriggers", name: "tick", cron: "@every 1m" }],
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

  it("invokes the function through the configured gateway and answers status, headers and body", async () => {
    seen.length = 0;
    const res = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", {
      method: "POST",
      path: "/sub/path?x=1",
      headers: {
        "content-type": "text/plain",
        "x-custom": "1",
        "X-Fizz-Instance": "forged",
        connection: "upgrade",
      },
      body: "hi",
    });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    const answer = res.body as unknown as {
      status: number;
      headers: [string, string][];
      body: string;
      bodyEncoding: string;
    };
    expect(answer.status).to.equal(201);
    expect(answer.body).to.equal("you said hi");
    expect(answer.bodyEncoding).to.equal("utf8");
    const names = answer.headers.map(([k]) => k);
    expect(names).to.include("x-answer");
    expect(names).to.not.include("x-fizz-instance");
    expect(names).to.not.include("connection");
    expect(seen).to.have.length(1);
    expect(seen[0]!.method).to.equal("POST");
    expect(seen[0]!.url).to.equal("/function/hello.default/sub/path?x=1");
    expect(seen[0]!.headers["x-custom"]).to.equal("1");
    expect(seen[0]!.headers["x-fizz-instance"]).to.equal(undefined);
    expect(seen[0]!.headers.authorization).to.equal(undefined);
  });

  it("answers a binary body as base64 and cuts a long answer at 1 MiB", async () => {
    const bin = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", {
      path: "/binary",
    });
    expect(bin.body).to.deep.include({
      status: 200,
      bodyEncoding: "base64",
      body: "/wD+",
      truncated: false,
    });
    const big = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", {
      path: "/big",
    });
    const b = big.body as unknown as { body: string; truncated: boolean };
    expect(b.truncated).to.equal(true);
    expect(b.body.length).to.equal(1024 * 1024);
  });

  it("gives up on a function that does not answer in time with 504 TIMEOUT", async () => {
    const res = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", {
      path: "/never",
    });
    expect(res.status).to.equal(504);
    expect(res.body.error.code).to.equal("TIMEOUT");
  });

  it("ends a call whose answer never finishes at the timeout with 504, and closes the connection", async () => {
    const res = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", {
      path: "/drip",
    });
    expect(res.status).to.equal(504);
    expect(res.body.error.code).to.equal("TIMEOUT");
    await waitFor(() => dripClosed.length === 1);
  });

  it("hands a function's Set-Cookie and HTML back as JSON data: nothing set or rendered on the registry's origin", async () => {
    const res = await reg.api.call(
      "POST",
      "/v1/namespaces/default/functions/hello/invoke",
      { path: "/cookie" },
      { headers: { origin: reg.api.base } },
    );
    expect(res.status).to.equal(200);
    expect(res.headers.get("set-cookie")).to.equal(null);
    expect(res.headers.get("content-type")).to.match(/^application\/json/);
    const answer = res.body as unknown as { headers: [string, string][]; body: string };
    expect(answer.headers).to.deep.include(["set-cookie", "session=stolen; Path=/"]);
    expect(answer.body).to.equal("<script>parent.pwned = 1</script>");
  });

  it("never calls anywhere but the configured gateway: a URL field or an escaping path is refused", async () => {
    seen.length = 0;
    const attacks: [Record<string, unknown>, string][] = [
      [{ url: `${elsewhere.url}/x` }, "url"],
      [{ gatewayUrl: elsewhere.url }, "gatewayUrl"],
      [{ path: elsewhere.url }, "path"],
      [{ path: `//${new URL(elsewhere.url).host}/x` }, "path"],
      [{ path: "@127.0.0.1/x" }, "path"],
      [{ path: "/../other.default" }, "path"],
      [{ path: "/%2e%2e/other.default" }, "path"],
      [{ path: "/a\\b" }, "path"],
      [{ path: "/caf\u00e9/\u20ac" }, "path"],
      [{ path: "/x%0d%0aHost: evil\r\n" }, "path"],
      [{ headers: { host: new URL(elsewhere.url).host, "bad name": "x" } }, "headers.bad name"],
      [{ method: "CONNECT" }, "method"],
      [{ headers: { "x-split": "a\r\nx-injected: 1" } }, "headers.x-split"],
      [{ headers: { "x-ctl": "a\u0001b" } }, "headers.x-ctl"],
      [{ headers: { "x-wide": "\u20ac" } }, "headers.x-wide"],
    ];
    for (const [body, field] of attacks) {
      const res = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", body);
      expect(res.status, JSON.stringify(body)).to.equal(400);
      expect(res.body.error.code).to.equal("VALIDATION_FAILED");
      expect(res.body.error.field, JSON.stringify(body)).to.equal(field);
    }
    // A Host header is dropped, not obeyed: the call still goes to the gateway, for this function.
    const hosted = await reg.api.call("POST", "/v1/namespaces/default/functions/hello/invoke", {
      headers: { host: new URL(elsewhere.url).host },
    });
    expect(hosted.status).to.equal(200);
    expect(seen.map((s) => s.url)).to.deep.equal(["/function/hello.default"]);
    expect(seen[0]!.headers.host).to.equal(new URL(gateway.url).host);
    expect(seenElsewhere).to.deep.equal([]);
  });

  it("accepts the console's own POST (Origin = the registry's host) and refuses another Origin even with the token", async () => {
    const invoke = "/v1/namespaces/default/functions/hello/invoke";
    const own = await reg.api.call("POST", invoke, {}, { headers: { origin: reg.api.base } });
    expect(own.status, JSON.stringify(own.body)).to.equal(200);
    for (const origin of [elsewhere.url, "http://evil.example", `https://127.0.0.1.evil.example`]) {
      const res = await reg.api.call("POST", invoke, {}, { headers: { origin } });
      expect(res.status, origin).to.equal(403);
      expect(res.body.error.field).to.equal("Origin");
    }
    // Without the token, the same-origin POST is still refused.
    const anonymous = await reg.api
      .as(null)
      .call("POST", invoke, {}, { headers: { origin: reg.api.base } });
    expect(anonymous.status).to.equal(401);
  });

  it("lets the read-only token see stats and pools but not invoke; no token gets 401", async () => {
    const read = reg.api.as(READ_TOKEN);
    expect((await read.call("GET", "/v1/pools")).status).to.equal(200);
    expect(
      (await read.call("GET", "/v1/namespaces/default/functions/hello/stats")).status,
    ).to.equal(200);
    const invoked = await read.call("POST", "/v1/namespaces/default/functions/hello/invoke", {});
    expect(invoked.status).to.equal(403);
    const nobody = reg.api.as(null);
    for (const [m, p] of [
      ["GET", "/v1/console/functions"],
      ["GET", "/v1/pools"],
      ["GET", "/v1/namespaces/default/functions/hello/stats"],
      ["POST", "/v1/namespaces/default/functions/hello/invoke"],
    ] as const)
      expect((await nobody.call(m, p, m === "POST" ? {} : undefined)).status, p).to.equal(401);
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
    seen.length = 0;
    const res = await reg.api.call("POST", "/v1/namespaces/team-b/functions/hello/invoke", {});
    expect(res.status).to.equal(200);
    expect(seen.map((x) => x.url)).to.deep.equal(["/function/hello.team-b"]);
  });
});
