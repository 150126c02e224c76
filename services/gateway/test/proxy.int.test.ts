import http from "node:http";
import net from "node:net";
import { expect } from "chai";
import { FizzError } from "@fizz/events";
import { freePort } from "@fizz/testkit";
import {
  call,
  closeClients,
  deferred,
  functionObject,
  leaseOf,
  startHarness,
  startInstance,
  triggerObject,
  within,
  type Harness,
  type Instance,
} from "./harness";

const FUNCTIONS = [
  "echo",
  "stream",
  "upload",
  "upload-len",
  "slow-upload",
  "warm",
  "burst",
  "dies",
  "dies-get",
  "refused",
  "misdirected",
  "notspec",
  "busy",
  "busy-none",
  "hang",
  "late",
  "big",
  "gone",
  "nf",
  "broken",
  "slowsched",
  "nosched",
  "coldpost",
];

describe("gateway proxy (real NATS)", function () {
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
      functions: [...FUNCTIONS.map((n) => functionObject(n)), functionObject("echo", "team")],
      triggers: [
        triggerObject("users", { function: "echo", path: "/users/{id}", methods: ["GET", "POST"] }),
        triggerObject("static", { function: "echo", prefix: "/static" }),
      ],
      env: { FIZZ_MAX_BODY_BYTES: String(64 * 1024) },
    });
    const e = await instance("echo-1");
    h.leases.set("echo", (req) => leaseOf(e, "echo", { namespace: req.namespace }));
  });

  after(async () => {
    closeClients();
    await h?.close();
    await Promise.all(instances.map((i) => i.close()));
  });

  it("proxies a trigger route with params, forwarded headers and the request id, minus hop-by-hop headers", async () => {
    const r = await call(h.gateway.port, "GET", "/users/42?x=1", {
      headers: {
        host: "fizz.example:8080",
        connection: "keep-alive, x-secret",
        "keep-alive": "timeout=5",
        te: "trailers",
        "proxy-authorization": "Basic abc",
        "x-secret": "hidden",
        "x-request-id": "req-123",
        "x-fizz-instance": "forged",
        "x-custom": "kept",
      },
    });
    expect(r.status).to.equal(200);
    expect(r.headers["x-request-id"]).to.equal("req-123");
    const seen = r.json<{ method: string; url: string; headers: Record<string, string> }>();
    expect(seen.url).to.equal("/users/42?x=1");
    expect(seen.headers).to.include({
      "x-fizz-instance": "echo-1",
      "x-fizz-function-name": "echo",
      "x-fizz-function-namespace": "default",
      "x-fizz-function-revision": "1",
      "x-fizz-params-id": "42",
      "x-forwarded-for": "127.0.0.1",
      "x-forwarded-host": "fizz.example:8080",
      "x-forwarded-proto": "http",
      "x-request-id": "req-123",
      "x-custom": "kept",
    });
    for (const gone of ["keep-alive", "te", "proxy-authorization", "x-secret"])
      expect(seen.headers, gone).not.to.have.property(gone);
  });

  it("generates a request id when the client sends none and echoes it", async () => {
    const r = await call(h.gateway.port, "GET", "/static/a.css");
    expect(r.status).to.equal(200);
    const id = r.headers["x-request-id"];
    expect(id).to.match(/^[0-9a-f-]{36}$/);
    expect(r.json<{ headers: Record<string, string> }>().headers["x-request-id"]).to.equal(id);
  });

  it("passes /function/<name>[.<ns>] with the rest of the path as the function's path", async () => {
    const a = await call(h.gateway.port, "GET", "/function/echo/a/b?x=1");
    expect(a.json()).to.include({ url: "/a/b?x=1" });
    const b = await call(h.gateway.port, "POST", "/function/echo", { body: "hi" });
    expect(b.json()).to.include({ url: "/", body: "hi", method: "POST" });
    const c = await call(h.gateway.port, "GET", "/function/echo.team/x");
    expect(
      c.json<{ headers: Record<string, string> }>().headers["x-fizz-function-namespace"],
    ).to.equal("team");
  });

  it("answers 404 NO_ROUTE for an unknown route without asking the scheduler", async () => {
    const before = h.leaseCalls.length;
    const r = await call(h.gateway.port, "GET", "/nowhere");
    expect(r.status).to.equal(404);
    expect(r.json()).to.deep.equal({
      error: { code: "NO_ROUTE", message: "no route for GET /nowhere", retryable: false },
    });
    expect(h.leaseCalls.length).to.equal(before);
  });

  it("streams SSE: each chunk reaches the client before the upstream finishes", async () => {
    const gate = deferred();
    const i = await instance("stream-1", (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: one\n\n");
      void gate.promise.then(() => res.end("data: two\n\n"));
    });
    h.leases.set("stream", () => leaseOf(i, "stream"));
    const chunks: string[] = [];
    const ended = deferred();
    const req = http.get(
      { host: "127.0.0.1", port: h.gateway.port, path: "/function/stream" },
      (res) => {
        expect(res.headers["content-type"]).to.equal("text/event-stream");
        res.on("data", (c: Buffer) => {
          chunks.push(c.toString());
          if (chunks.join("").includes("one")) gate.resolve();
        });
        res.on("end", () => ended.resolve());
      },
    );
    req.on("error", () => undefined);
    await within(gate.promise, 5000, "the first SSE chunk while the upstream is still open");
    await within(ended.promise, 5000, "the end of the stream");
    expect(chunks.join("")).to.equal("data: one\n\ndata: two\n\n");
  });

  it("streams the request body: the instance reads the first chunk before the client sends the rest", async () => {
    const firstSeen = deferred();
    const i = await instance("upload-1", (req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => {
        body += c.toString();
        firstSeen.resolve();
      });
      req.on("end", () => res.end(`got:${body}`));
    });
    h.leases.set("upload", () => leaseOf(i, "upload"));
    const reply = deferred<string>();
    const req = http.request(
      { host: "127.0.0.1", port: h.gateway.port, method: "POST", path: "/function/upload" },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => reply.resolve(text));
      },
    );
    req.write("part1;");
    await within(firstSeen.promise, 5000, "the first body chunk at the instance");
    req.end("part2");
    expect(await within(reply.promise, 5000, "the reply")).to.equal("got:part1;part2");
  });

  it("streams a body of a known length as it comes: the instance reads its first chunk before the client sends the rest", async () => {
    const firstSeen = deferred();
    const i = await instance("upload-len-1", (req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => {
        body += c.toString();
        firstSeen.resolve();
      });
      req.on("end", () => res.end(`got:${body}:${req.headers["content-length"]}`));
    });
    h.leases.set("upload-len", () => leaseOf(i, "upload-len"));
    const reply = deferred<string>();
    const req = http.request(
      {
        host: "127.0.0.1",
        port: h.gateway.port,
        method: "POST",
        path: "/function/upload-len",
        headers: { "content-length": "11" },
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => reply.resolve(text));
      },
    );
    req.write("part1;");
    await within(firstSeen.promise, 5000, "the first body chunk at the instance");
    req.end("part2");
    expect(await within(reply.promise, 5000, "the reply")).to.equal("got:part1;part2:11");
  });

  it("answers 408 REQUEST_TIMEOUT when the client is still sending its body at the function's timeout, and keeps the instance", async () => {
    const i = await instance("slow-upload-1", (req, res) => {
      req.resume();
      req.on("end", () => res.end("read"));
    });
    h.leases.set("slow-upload", () => leaseOf(i, "slow-upload", { timeoutMs: 300 }));
    const answer = deferred<{ status: number; body: string }>();
    const req = http.request(
      {
        host: "127.0.0.1",
        port: h.gateway.port,
        method: "POST",
        path: "/function/slow-upload",
        headers: { "content-length": "100" },
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => answer.resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", () => undefined);
    req.write("only the start");
    const r = await within(answer.promise, 5000, "the answer");
    req.destroy();
    expect(r.status).to.equal(408);
    expect((JSON.parse(r.body) as { error: { code: string } }).error.code).to.equal(
      "REQUEST_TIMEOUT",
    );
    // The instance was never the slow one: it is not named failed, and serves the next call.
    expect(
      (await call(h.gateway.port, "POST", "/function/slow-upload", { body: "x" })).status,
    ).to.equal(200);
    for (const c of h.callsFor("slow-upload")) expect(c.failed ?? []).to.deep.equal([]);
  });

  it("serves warm requests from the cached lease without asking the scheduler again", async () => {
    const i = await instance("warm-1");
    h.leases.set("warm", () => leaseOf(i, "warm"));
    for (let n = 0; n < 5; n++)
      expect((await call(h.gateway.port, "GET", "/function/warm")).status).to.equal(200);
    expect(h.callsFor("warm")).to.have.length(1);
    expect(i.hits).to.equal(5);
  });

  it("makes one lease request for 100 concurrent first requests", async () => {
    const i = await instance("burst-1");
    h.leases.set("burst", async () => {
      await new Promise((r) => setTimeout(r, 100));
      return leaseOf(i, "burst", { slots: 200 });
    });
    const replies = await Promise.all(
      Array.from({ length: 100 }, () => call(h.gateway.port, "GET", "/function/burst")),
    );
    expect(replies.every((r) => r.status === 200)).to.equal(true);
    expect(h.callsFor("burst")).to.have.length(1);
  });

  it("answers 502 INSTANCE_FAILED when the instance dies mid-request, and reports it failed", async () => {
    const dying = await instance("dies-1", (req) => req.socket.destroy());
    const healthy = await instance("dies-2");
    let n = 0;
    h.leases.set("dies", () => (n++ === 0 ? leaseOf(dying, "dies") : leaseOf(healthy, "dies")));
    const r = await call(h.gateway.port, "POST", "/function/dies", { body: "payload" });
    expect(r.status).to.equal(502);
    expect(r.json<{ error: { code: string } }>().error.code).to.equal("INSTANCE_FAILED");
    expect(dying.hits).to.equal(1, "a POST is not sent twice");
    expect((await call(h.gateway.port, "POST", "/function/dies", { body: "x" })).status).to.equal(
      200,
    );
    expect(h.callsFor("dies")[1]?.failed).to.deep.equal(["dies-1"]);
  });

  it("retries a bodiless GET once on another instance when the first dies mid-request", async () => {
    const dying = await instance("dies-get-1", (req) => req.socket.destroy());
    const healthy = await instance("dies-get-2");
    let n = 0;
    h.leases.set("dies-get", () =>
      n++ === 0 ? leaseOf(dying, "dies-get") : leaseOf(healthy, "dies-get"),
    );
    const r = await call(h.gateway.port, "GET", "/function/dies-get");
    expect(r.status).to.equal(200);
    expect([dying.hits, healthy.hits]).to.deep.equal([1, 1]);
  });

  it("serves the client's next request on its kept-alive connection after a 20 KiB POST that waited for its lease", async () => {
    // A cold start's wait: the body is all in before anything reads it (past the request
    // stream's 16 KiB buffer), and the front end stops reading the socket meanwhile.
    const i = await instance("coldpost-1");
    h.leases.set("coldpost", async () => {
      await new Promise((r) => setTimeout(r, 50));
      return leaseOf(i, "coldpost");
    });
    const sock = net.connect(h.gateway.port, "127.0.0.1");
    let got = "";
    sock.on("data", (d: Buffer) => (got += d.toString("latin1")));
    const answers = (): number => got.split("HTTP/1.1 200 OK").length - 1;
    const answered = async (n: number): Promise<void> => {
      while (answers() < n) await new Promise((r) => setTimeout(r, 5));
    };
    try {
      const body = "p".repeat(20_000);
      sock.write(
        `POST /function/coldpost HTTP/1.1\r\nhost: x\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
      );
      await within(answered(1), 3000, "the POST's answer");
      expect(got).to.include(`"body":"${body}"`);
      sock.write("GET /function/coldpost?next=1 HTTP/1.1\r\nhost: x\r\n\r\n");
      await within(answered(2), 3000, "the next request's answer on the same connection");
      expect(got).to.include('"url":"/?next=1"');
    } finally {
      sock.destroy();
    }
  });

  it("retries through a new lease when the connection is refused, with the body sent again", async () => {
    const deadPort = await freePort();
    const alive = await instance("refused-2");
    let n = 0;
    h.leases.set("refused", () =>
      n++ === 0
        ? leaseOf({ id: "refused-1", address: `http://127.0.0.1:${deadPort}` }, "refused")
        : leaseOf(alive, "refused"),
    );
    const r = await call(h.gateway.port, "POST", "/function/refused", { body: "keep me" });
    expect(r.status).to.equal(200);
    expect(r.json()).to.include({ body: "keep me" });
    const calls = h.callsFor("refused");
    expect(calls).to.have.length(2);
    expect(calls[1]?.failed).to.deep.equal(["refused-1"]);
  });

  it("drops a lease answered with 421 and retries on a new lease", async () => {
    const reused = await instance("misdirected-new"); // the port now belongs to another instance
    const right = await instance("misdirected-2");
    let n = 0;
    h.leases.set("misdirected", () =>
      n++ === 0
        ? leaseOf({ id: "misdirected-old", address: reused.address }, "misdirected")
        : leaseOf(right, "misdirected"),
    );
    const r = await call(h.gateway.port, "PUT", "/function/misdirected", { body: "v" });
    expect(r.status).to.equal(200);
    expect(r.json()).to.include({ body: "v", method: "PUT" });
    expect(reused.hits).to.equal(0);
    expect(h.callsFor("misdirected")[1]?.failed).to.deep.equal(["misdirected-old"]);
  });

  it("retries on a new lease when the instance answers 503 NOT_SPECIALIZED", async () => {
    const generic = await instance("notspec-1", (_req, res) => {
      res.writeHead(503, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          error: { code: "NOT_SPECIALIZED", message: "not specialized", retryable: true },
        }),
      );
    });
    const ok = await instance("notspec-2");
    let n = 0;
    h.leases.set("notspec", () =>
      n++ === 0 ? leaseOf(generic, "notspec") : leaseOf(ok, "notspec"),
    );
    const r = await call(h.gateway.port, "GET", "/function/notspec");
    expect(r.status).to.equal(200);
    expect(h.callsFor("notspec")[1]?.failed).to.deep.equal(["notspec-1"]);
  });

  it("tries another instance on 429 INSTANCE_BUSY", async () => {
    const busyBody = JSON.stringify({
      error: { code: "INSTANCE_BUSY", message: "busy", retryable: true },
    });
    const busy = await instance("busy-1", (_req, res) => {
      res.writeHead(429, { "retry-after": "1", "content-type": "application/json" });
      res.end(busyBody);
    });
    const free = await instance("busy-2");
    h.leases.set("busy", (req) =>
      req.exclude.includes("busy-1") ? leaseOf(free, "busy") : leaseOf(busy, "busy"),
    );
    const r = await call(h.gateway.port, "GET", "/function/busy");
    expect(r.status).to.equal(200);
    expect(h.callsFor("busy")[1]?.exclude).to.deep.equal(["busy-1"]);
  });

  it("passes the 429 with Retry-After when no other instance can take the request", async () => {
    const busy = await instance("busy-none-1", (_req, res) => {
      res.writeHead(429, { "content-type": "application/json" });
      res.end(
        JSON.stringify({ error: { code: "INSTANCE_BUSY", message: "busy", retryable: true } }),
      );
    });
    let n = 0;
    h.leases.set("busy-none", () => {
      if (n++ === 0) return leaseOf(busy, "busy-none");
      throw new FizzError("NO_CAPACITY", "at maxInstances");
    });
    const r = await call(h.gateway.port, "GET", "/function/busy-none");
    expect(r.status).to.equal(429);
    expect(r.headers["retry-after"]).to.equal("1");
    expect(r.json<{ error: { code: string } }>().error.code).to.equal("INSTANCE_BUSY");
  });

  it("answers 504 TIMEOUT at the lease's timeout and names the hung instance in the next lease request", async () => {
    const hung = await instance("hang-1", () => undefined);
    const ok = await instance("hang-2");
    let n = 0;
    h.leases.set("hang", () =>
      n++ === 0 ? leaseOf(hung, "hang", { timeoutMs: 300 }) : leaseOf(ok, "hang"),
    );
    const t0 = Date.now();
    const r = await call(h.gateway.port, "POST", "/function/hang", { body: "x" });
    expect(r.status).to.equal(504);
    expect(r.json<{ error: { code: string } }>().error.code).to.equal("TIMEOUT");
    expect(Date.now() - t0).to.be.below(3000);
    expect((await call(h.gateway.port, "GET", "/function/hang")).status).to.equal(200);
    expect(h.callsFor("hang")[1]?.failed).to.deep.equal(["hang-1"]);
  });

  it("answers 504 at the function's timeout, not up to a second after it", async () => {
    let receivedAt = 0;
    const hung = await instance("late-1", () => {
      receivedAt = performance.now();
    });
    // Above 1 s, where undici's own timeouts run on a coarse tick.
    h.leases.set("late", () => leaseOf(hung, "late", { timeoutMs: 1500 }));
    const r = await call(h.gateway.port, "POST", "/function/late", { body: "x" });
    const elapsed = performance.now() - receivedAt;
    expect(r.status).to.equal(504);
    expect(elapsed).to.be.at.least(1400);
    expect(elapsed).to.be.below(1500 + 200);
  });

  it("answers 413 at once for a Content-Length over the limit, without a lease", async () => {
    const r = await call(h.gateway.port, "POST", "/function/big", {
      headers: { "content-length": String(65 * 1024) },
      body: "",
    });
    expect(r.status).to.equal(413);
    expect(r.json<{ error: { code: string } }>().error.code).to.equal("PAYLOAD_TOO_LARGE");
    expect(h.callsFor("big")).to.have.length(0);
  });

  it("answers 413 and aborts the upstream when a streamed body grows past the limit", async () => {
    const upstreamClosed = deferred();
    const i = await instance("big-1", (req) => {
      req.resume();
      req.on("close", () => upstreamClosed.resolve());
    });
    h.leases.set("big", () => leaseOf(i, "big"));
    const status = deferred<number>();
    const req = http.request(
      { host: "127.0.0.1", port: h.gateway.port, method: "POST", path: "/function/big" },
      (res) => {
        status.resolve(res.statusCode ?? 0);
        res.resume();
      },
    );
    req.on("error", () => undefined);
    const chunk = Buffer.alloc(16 * 1024, 97);
    for (let n = 0; n < 6; n++) {
      req.write(chunk);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await within(status.promise, 5000, "the 413")).to.equal(413);
    await within(upstreamClosed.promise, 5000, "the upstream request to be aborted");
    req.destroy();
  });

  it("aborts the upstream request when the client disconnects", async () => {
    const arrived = deferred();
    const upstreamClosed = deferred();
    const i = await instance("gone-1", (_req, res) => {
      res.on("close", () => upstreamClosed.resolve());
      arrived.resolve();
    });
    h.leases.set("gone", () => leaseOf(i, "gone"));
    const req = http.get({
      host: "127.0.0.1",
      port: h.gateway.port,
      path: "/function/gone",
      agent: false,
    });
    req.on("error", () => undefined);
    await within(arrived.promise, 5000, "the request at the instance");
    req.destroy();
    await within(upstreamClosed.promise, 5000, "the upstream to see the close");
  });

  describe("scheduler errors", () => {
    const cases: [string, FizzError, number, string][] = [
      ["nf", new FizzError("NOT_FOUND", "function nf not found"), 404, "NOT_FOUND"],
      [
        "broken",
        new FizzError("FUNCTION_LOAD_FAILED", "f.js:2: SyntaxError: Unexpected token"),
        500,
        "FUNCTION_LOAD_FAILED",
      ],
      ["slowsched", new FizzError("TIMEOUT", "specialization timed out"), 504, "TIMEOUT"],
    ];
    for (const [fn, err, status, code] of cases) {
      it(`maps ${code} from the scheduler to ${status}`, async () => {
        h.leases.set(fn, () => {
          throw err;
        });
        const r = await call(h.gateway.port, "GET", `/function/${fn}`);
        expect(r.status).to.equal(status);
        const body = r.json<{ error: { code: string; message: string } }>();
        expect(body.error.code).to.equal(code);
        expect(body.error.message).to.equal(err.message);
      });
    }

    it("maps a missing scheduler to 503 UNAVAILABLE", async () => {
      h.stopScheduler();
      try {
        await h.nc.flush();
        const r = await call(h.gateway.port, "GET", "/function/nosched");
        expect(r.status).to.equal(503);
        expect(r.json<{ error: { code: string } }>().error.code).to.equal("UNAVAILABLE");
      } finally {
        h.startScheduler();
        await h.nc.flush();
      }
    });
  });
});
