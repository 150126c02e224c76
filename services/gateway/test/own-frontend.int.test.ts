import type http from "node:http";
import { expect } from "chai";
import { waitFor } from "@fizz/testkit";
import {
  closeClients,
  deferred,
  echo,
  functionObject,
  leaseOf,
  startHarness,
  startInstance,
  type Harness,
  type Instance,
  within,
} from "./harness";
import { get, RawClient } from "./raw-http";

/** What the function behind `/function/t/<what>` does: echo, answer late, stream, hang. */
const upstream = {
  /** Bytes the `big` answer handed to its socket so far; `bigClosed` once its client went. */
  bigWritten: 0,
  bigClosed: deferred(),
  hangClosed: deferred(),
};

function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://x");
  switch (url.pathname) {
    case "/slow": {
      const body = `answer ${url.searchParams.get("n")}`;
      setTimeout(() => res.end(body), Number(url.searchParams.get("ms") ?? 0));
      return;
    }
    case "/stream": // no Content-Length: the gateway sends it chunked
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("first,");
      setTimeout(() => res.end("second"), 50);
      return;
    case "/big": {
      // 64 MiB in 64 KiB chunks, as fast as the gateway takes them.
      const chunk = Buffer.alloc(64 * 1024, 120);
      let left = 1024;
      res.writeHead(200, { "content-length": String(chunk.length * left) });
      res.on("close", () => upstream.bigClosed.resolve());
      const pump = (): void => {
        while (left > 0) {
          left--;
          upstream.bigWritten += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
        res.end();
      };
      pump();
      return;
    }
    case "/late-reader": {
      // Takes no body byte for 1 s, then counts them.
      req.pause();
      let n = 0;
      setTimeout(() => {
        req.on("data", (c: Buffer) => (n += c.length));
        req.on("end", () => res.end(String(n)));
        req.resume();
      }, 1000);
      return;
    }
    case "/hang": // a head and one chunk, then nothing
      res.on("close", () => upstream.hangClosed.resolve());
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("started");
      return;
    default:
      echo(req, res);
  }
}

/**
 * The gateway's own client-facing HTTP/1.1 server (FIZZ_GATEWAY_FRONTEND=own), on raw sockets
 * for what an HTTP client library hides. The same checks run on node's http.Server, the default,
 * so the two stay alike (where they differ, the test says so).
 */
for (const frontend of ["own", "node"] as const) {
  describe(`gateway front end: ${frontend} (real NATS, raw sockets)`, function () {
    this.timeout(30_000);
    let h: Harness;
    let inst: Instance;
    const port = (): number => h.gateway.port;
    const clients: RawClient[] = [];
    const client = (): RawClient => {
      const c = new RawClient(port());
      clients.push(c);
      return c;
    };

    before(async () => {
      h = await startHarness({
        functions: [functionObject("t")],
        triggers: [],
        env: {
          FIZZ_GATEWAY_FRONTEND: frontend,
          FIZZ_GATEWAY_HEADERS_TIMEOUT_MS: "1500",
          FIZZ_GATEWAY_REQUEST_TIMEOUT_MS: "3000",
          FIZZ_GATEWAY_KEEPALIVE_TIMEOUT_MS: "2000",
          FIZZ_GATEWAY_BODY_IDLE_TIMEOUT_MS: "0",
          FIZZ_MAX_BODY_BYTES: String(128 * 1024 * 1024),
        },
      });
      inst = await startInstance("t-1", handler);
      h.leases.set("t", () => leaseOf(inst, "t"));
    });
    afterEach(() => {
      for (const c of clients.splice(0)) c.destroy();
    });
    after(async () => {
      closeClients();
      await h?.close();
      await inst?.close();
    });

    it("keeps an HTTP/1.1 connection open across requests (keep-alive)", async () => {
      const c = client();
      for (let i = 0; i < 3; i++) {
        c.send(get(`/function/t/slow?n=${i}`));
        const r = await c.readReply();
        expect(r.status).to.equal(200);
        expect(r.body.toString()).to.equal(`answer ${i}`);
        expect(r.headers.connection).to.equal("keep-alive");
      }
      expect(c.isClosed).to.equal(false);
    });

    it("closes after the answer to a request with Connection: close", async () => {
      const c = client();
      c.send(get("/function/t/slow?n=1", "Connection: close\r\n"));
      const r = await c.readReply();
      expect(r.body.toString()).to.equal("answer 1");
      expect(r.headers.connection).to.equal("close");
      await c.closed;
    });

    it("closes HTTP/1.0 connections unless they ask for keep-alive", async () => {
      const c = client();
      c.send("GET /function/t/slow?n=1 HTTP/1.0\r\nHost: x\r\n\r\n");
      expect((await c.readReply()).body.toString()).to.equal("answer 1");
      await c.closed;
      const k = client();
      for (let i = 0; i < 2; i++) {
        k.send(`GET /function/t/slow?n=${i} HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n`);
        const r = await k.readReply();
        expect(r.body.toString()).to.equal(`answer ${i}`);
        expect(r.headers.connection).to.equal("keep-alive");
      }
      expect(k.isClosed).to.equal(false);
    });

    it("answers pipelined requests in the order they were sent, a slow one first", async () => {
      const c = client();
      c.send(
        get("/function/t/slow?n=0&ms=300") +
          get("/function/t/slow?n=1&ms=0") +
          "POST /function/t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
          get("/function/t/slow?n=3&ms=50"),
      );
      const bodies: string[] = [];
      for (let i = 0; i < 4; i++) bodies.push((await c.readReply()).body.toString());
      expect(bodies[0]).to.equal("answer 0");
      expect(bodies[1]).to.equal("answer 1");
      expect(JSON.parse(bodies[2] as string)).to.include({ method: "POST", body: "hello" });
      expect(bodies[3]).to.equal("answer 3");
    });

    it("passes a chunked request body on whole", async () => {
      const c = client();
      c.send("POST /function/t/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
      c.send("5\r\nhello\r\n");
      await new Promise((r) => setTimeout(r, 50));
      c.send("7\r\n, world\r\n0\r\n\r\n");
      const r = await c.readReply();
      expect(r.status).to.equal(200);
      expect(JSON.parse(r.body.toString())).to.include({ body: "hello, world" });
    });

    it("answers Expect: 100-continue with 100 before the body is sent, then the answer", async () => {
      const c = client();
      c.send(
        "POST /function/t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
      );
      const interim = await c.readReply();
      expect(interim.status).to.equal(100);
      c.send("body");
      const r = await c.readReply();
      expect(r.status).to.equal(200);
      expect(JSON.parse(r.body.toString())).to.include({ body: "body" });
    });

    it("reads and drops the body of a request answered without it, and keeps the connection", async () => {
      const c = client();
      c.send("POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nignore");
      expect((await c.readReply()).status).to.equal(404);
      c.send(get("/function/t/slow?n=2"));
      expect((await c.readReply()).body.toString()).to.equal("answer 2");
    });

    it("answers 400 to a malformed request and closes", async () => {
      const c = client();
      c.send("GET / HTTP/1.1\r\nHost x\r\n\r\n");
      const r = await c.readReply();
      expect(r.status).to.equal(400);
      await c.closed;
    });

    it("answers 400 to a malformed chunk in a body already handed on, and closes", async () => {
      const c = client();
      c.send("POST /function/t/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
      await new Promise((r) => setTimeout(r, 100));
      c.send("zz\r\n");
      expect((await c.readReply()).status).to.equal(400);
      await c.closed;
    });

    it("answers 400 to an HTTP/1.1 request without Host", async () => {
      const c = client();
      c.send("GET /function/t/slow HTTP/1.1\r\n\r\n");
      expect((await c.readReply()).status).to.equal(400);
    });

    it("takes the request after a chunked body with trailers at its own URL", async () => {
      const c = client();
      c.send(
        "POST /function/t/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
          "2\r\nhi\r\n0\r\nX-Trailer: t\r\n\r\n" +
          get("/function/t/slow?n=5"),
      );
      expect(JSON.parse((await c.readReply()).body.toString())).to.include({ body: "hi" });
      expect((await c.readReply()).body.toString()).to.equal("answer 5");
    });

    it("answers 431 to a request head over 16 KiB and closes", async () => {
      const c = client();
      c.send(get("/function/t/slow", `X-Big: ${"a".repeat(17 * 1024)}\r\n`));
      const r = await c.readReply();
      expect(r.status).to.equal(431);
      await c.closed;
    });

    it("answers HEAD with the length but no body, and the connection stays usable", async () => {
      const c = client();
      c.send("HEAD /function/t/echo HTTP/1.1\r\nHost: x\r\n\r\n");
      const r = await c.readReply({ bodyless: true });
      expect(r.status).to.equal(200);
      expect(Number(r.headers["content-length"])).to.be.above(10);
      c.send(get("/function/t/slow?n=8"));
      expect((await c.readReply()).body.toString()).to.equal("answer 8");
    });

    it("sends a response streamed without a length chunked, each chunk as it comes", async () => {
      const c = client();
      c.send(get("/function/t/stream"));
      const r = await c.readReply();
      expect(r.headers["transfer-encoding"]).to.equal("chunked");
      expect(r.body.toString()).to.equal("first,second");
      c.send(get("/function/t/slow?n=9"));
      expect((await c.readReply()).body.toString()).to.equal("answer 9");
    });

    it("sends an HTTP/1.0 client a streamed answer without chunks, ended by the close", async () => {
      const c = client();
      c.send("GET /function/t/stream HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
      const r = await c.readReply();
      expect(r.headers["transfer-encoding"]).to.equal(undefined);
      expect(r.headers.connection).to.equal("close");
      expect(r.body.toString()).to.equal("first,second");
    });

    it("answers 417 to an expectation other than 100-continue", async () => {
      const c = client();
      c.send(
        "POST /function/t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: magic\r\n\r\n",
      );
      expect((await c.readReply()).status).to.equal(417);
    });

    it("aborts the function's answer when the client goes mid-response", async () => {
      upstream.hangClosed = deferred();
      const c = client();
      c.send(get("/function/t/hang"));
      await waitFor(() => c.pending.includes("started"), { timeoutMs: 5000, what: "the chunk" });
      c.destroy();
      await within(upstream.hangClosed.promise, 3000, "the upstream cut");
    });

    it("holds a fast answer back for a client that does not read (backpressure), then delivers it", async () => {
      upstream.bigWritten = 0;
      upstream.bigClosed = deferred();
      const c = client();
      c.socket.pause();
      c.send(get("/function/t/big"));
      await new Promise((r) => setTimeout(r, 1000));
      // Socket buffers (the client's, the gateway's both ways, the instance's) hold a few MiB.
      expect(upstream.bigWritten).to.be.below(24 * 1024 * 1024);
      c.socket.resume();
      const r = await c.readReply({ timeoutMs: 20_000 });
      expect(r.body.length).to.equal(64 * 1024 * 1024);
      expect(upstream.bigWritten).to.equal(64 * 1024 * 1024);
    });

    it("stops reading a request body the function does not take yet (backpressure), then passes it whole", async () => {
      const c = client();
      const size = 64 * 1024 * 1024;
      c.send(`POST /function/t/late-reader HTTP/1.1\r\nHost: x\r\nContent-Length: ${size}\r\n\r\n`);
      const chunk = Buffer.alloc(64 * 1024, 121);
      let accepted = 0;
      const sendAll = (async () => {
        while (accepted < size) {
          accepted += chunk.length;
          if (!c.socket.write(chunk)) await new Promise((r) => c.socket.once("drain", r));
        }
      })();
      await new Promise((r) => setTimeout(r, 700));
      // Held by socket buffers and the body's stream buffers only, not read into memory.
      expect(accepted).to.be.below(24 * 1024 * 1024);
      await sendAll;
      const r = await c.readReply({ timeoutMs: 20_000 });
      expect(r.body.toString()).to.equal(String(size));
    });

    it("on stop, lets the request in progress finish and closes the idle connections", async () => {
      const g = await startHarness({
        functions: [functionObject("t")],
        triggers: [],
        env: { FIZZ_GATEWAY_FRONTEND: frontend },
      });
      g.leases.set("t", () => leaseOf(inst, "t"));
      const idle = new RawClient(g.gateway.port);
      const busy = new RawClient(g.gateway.port);
      clients.push(idle, busy);
      idle.send(get("/function/t/slow?n=1"));
      await idle.readReply();
      busy.send(get("/function/t/slow?n=2&ms=500"));
      await new Promise((r) => setTimeout(r, 100));
      const stopped = g.close();
      await idle.closed;
      const r = await busy.readReply();
      expect(r.body.toString()).to.equal("answer 2");
      await busy.closed;
      await stopped;
    });

    if (frontend === "own") {
      // Node's server destroys the socket without an answer when nothing listens for 'upgrade'.
      it("refuses Upgrade and CONNECT with an error answer and closes", async () => {
        for (const req of [
          get("/function/t/echo", "Connection: Upgrade\r\nUpgrade: websocket\r\n"),
          "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        ]) {
          const c = client();
          c.send(req);
          const r = await c.readReply();
          expect(r.status).to.equal(400);
          expect(r.body.toString()).to.contain("upgrade");
          await c.closed;
        }
      });
    }

    it("answers 408 and closes when a request head does not arrive within the headers timeout", async () => {
      const c = client();
      const t0 = Date.now();
      c.send("GET /function/t/slow HTTP/1.1\r\nHost: x\r\n");
      await c.closed;
      expect(Date.now() - t0).to.be.within(1200, 4000);
      expect(c.pending).to.match(/^HTTP\/1\.1 408/);
    });

    it("closes a connection whose request body is still coming at the request timeout", async () => {
      const c = client();
      const t0 = Date.now();
      c.send("POST /function/t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
      const t = setInterval(() => c.send("x"), 200);
      try {
        await c.closed;
      } finally {
        clearInterval(t);
      }
      expect(Date.now() - t0).to.be.within(2500, 6000);
    });

    it("closes a keep-alive connection idle past the keep-alive timeout", async () => {
      const c = client();
      c.send(get("/function/t/slow?n=1"));
      await c.readReply();
      const t0 = Date.now();
      await c.closed;
      expect(Date.now() - t0).to.be.within(1500, 4500);
    });
  });
}
