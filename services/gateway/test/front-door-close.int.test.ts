import { createHook } from "node:async_hooks";
import http from "node:http";
import net from "node:net";
import { expect } from "chai";
import { lingerClose } from "../src/front-door/linger";
import { listenProxy, type ProxyServer, type ServerLimits } from "../src/front-door/server";
import { startEchoGateway, type EchoGateway } from "./echo-gateway";
import { RawClient } from "./raw-http";

const limits = (frontend: "node" | "own"): ServerLimits => ({
  maxConnections: 100,
  headersTimeoutMs: 1000,
  requestTimeoutMs: 3000,
  keepAliveTimeoutMs: 1000,
  frontend,
});

/** Far more than the socket buffers take: most of it waits for the client to read. */
const BIG = 16 << 20;
const big: http.RequestListener = (_req, res) => {
  res.writeHead(200, { "content-length": String(BIG) });
  res.end(Buffer.alloc(BIG, 120));
};

/** A refusal that closes the connection before the body came, as the gateway's early 413. */
const refuse: http.RequestListener = (req, res) => {
  res.writeHead(413, { "content-length": "0", connection: "close" });
  res.end();
  lingerClose(req);
};

/** A client whose upload is refused and that keeps trickling its body (the connection lingers). */
function trickler(port: number): { socket: net.Socket; closed: Promise<number> } {
  const socket = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  socket.on("error", () => undefined);
  socket.write("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n");
  const timer = setInterval(() => socket.destroyed || socket.write("x"), 50);
  const closed = new Promise<number>((resolve) =>
    socket.once("close", () => {
      clearInterval(timer);
      resolve(Date.now());
    }),
  );
  return { socket, closed };
}

const within = (p: Promise<number>, ms: number): Promise<number> =>
  Promise.race([p, new Promise<number>((resolve) => setTimeout(() => resolve(-1), ms))]);

/**
 * Sends `request`, then reads as a slow client: `stallMs` without reading, then about 4 MiB, and
 * again, until the connection ends (or 15 s pass). Bytes received.
 */
async function slowRead(port: number, request: string, stallMs: number): Promise<number> {
  const s = net.connect(port, "127.0.0.1");
  s.on("error", () => undefined);
  s.pause();
  await new Promise<void>((r) => s.once("connect", () => r()));
  s.write(request);
  let got = 0;
  let burst = 0;
  s.on("data", (d: Buffer) => {
    got += d.length;
    burst += d.length;
    if (burst < 4 << 20) return;
    burst = 0;
    s.pause();
    setTimeout(() => s.resume(), stallMs);
  });
  await new Promise((r) => setTimeout(r, stallMs));
  s.resume();
  await new Promise<void>((r) => {
    s.once("close", () => r());
    setTimeout(r, 15_000);
  });
  s.destroy();
  return got;
}

/**
 * Sends `request` and reads nothing for `waitMs`, then reads what is left: bytes received (all of
 * the answer if the gateway held on, part of it if the connection was cut meanwhile).
 */
async function stopReading(port: number, request: string, waitMs: number): Promise<number> {
  const s = net.connect(port, "127.0.0.1");
  s.on("error", () => undefined);
  s.pause();
  await new Promise<void>((r) => s.once("connect", () => r()));
  s.write(request);
  await new Promise((r) => setTimeout(r, waitMs));
  let got = 0;
  s.on("data", (d: Buffer) => (got += d.length));
  s.resume();
  await within(new Promise<number>((r) => s.once("close", () => r(0))), 5000);
  s.destroy();
  return got;
}

/**
 * A connection is not idle while an answer is still going out to a slow reader: neither the
 * keep-alive timeout nor a connection-ending answer may cut a download the client is taking.
 * A connection lingering after a refusal still counts against the limit, and a drain cuts it.
 */
for (const frontend of ["node", "own"] as const)
  describe(`gateway front door closing a connection (${frontend} front end)`, function () {
    this.timeout(30_000);
    let server: ProxyServer;
    afterEach(async () => server?.drain(0));

    it("lets a slow reader take a whole answer that ends its connection", async () => {
      server = await listenProxy(big, "127.0.0.1", 0, { count: 0 }, limits(frontend));
      const got = await slowRead(
        server.port,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        700,
      );
      expect(got).to.be.greaterThan(BIG);
    });

    it("counts the keep-alive timeout from when a slow reader has taken the answer", async () => {
      server = await listenProxy(big, "127.0.0.1", 0, { count: 0 }, limits(frontend));
      // Past the keep-alive timeout (1 s) in all, never that long without reading.
      const got = await slowRead(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 700);
      expect(got).to.be.greaterThan(BIG);
    });

    it("gives an answer after an idle keep-alive its own keep-alive timeout to be taken", async () => {
      // Two answers alike, each left unread for most of the keep-alive timeout, then taken, the
      // second sent after most of it idle: the second's stall counts from its own start, not from
      // the first's end (own compared it with the first's last sample, alike, and cut it).
      server = await listenProxy(big, "127.0.0.1", 0, { count: 0 }, limits(frontend));
      const s = net.connect(server.port, "127.0.0.1");
      s.on("error", () => undefined);
      s.pause();
      await new Promise<void>((r) => s.once("connect", () => r()));
      let got = 0;
      let closed = false;
      s.on("close", () => (closed = true));
      s.on("data", (d: Buffer) => (got += d.length));
      const take = async () => {
        const want = got + BIG;
        s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        await new Promise((r) => setTimeout(r, 600));
        s.resume();
        while (got < want && !closed) await new Promise((r) => setTimeout(r, 5));
        s.pause();
      };
      await take();
      await new Promise((r) => setTimeout(r, 800));
      await take();
      await take(); // at once: no tick between the two need see nothing waiting
      s.destroy();
      expect(got).to.be.greaterThan(3 * BIG);
    });

    it("cuts a client that stops taking its answer, after the keep-alive timeout", async () => {
      server = await listenProxy(big, "127.0.0.1", 0, { count: 0 }, limits(frontend));
      const got = await stopReading(
        server.port,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        3000,
      );
      expect(got).to.be.below(BIG);
    });

    it("cuts a pipelining client that stops taking its answers, after the keep-alive timeout", async () => {
      // The second request waits for the client to take the first answer (a 16 MiB one).
      const late: http.RequestListener = (req, res) =>
        req.url === "/big" ? void setTimeout(() => big(req, res), 20) : big(req, res);
      server = await listenProxy(late, "127.0.0.1", 0, { count: 0 }, limits(frontend));
      const got = await stopReading(
        server.port,
        "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\n\r\n",
        3000,
      );
      expect(got).to.be.below(BIG);
    });

    it("cuts a client that stops taking an answer still being written", async () => {
      // A streamed answer (a function's, held back by the client's backpressure) never ends.
      const streamed: http.RequestListener = (_req, res) => {
        res.writeHead(200, { "content-type": "application/octet-stream" });
        res.write(Buffer.alloc(BIG, 120));
      };
      server = await listenProxy(streamed, "127.0.0.1", 0, { count: 0 }, limits(frontend));
      const got = await stopReading(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 3000);
      expect(got).to.be.below(BIG);
    });

    it("does not cut a client waiting for an answer still being made", async () => {
      // Half an answer, taken, then nothing for twice the keep-alive timeout (a slow function),
      // with a pipelined request behind it: nothing waits for the client, it is not stalled.
      const slow: http.RequestListener = (req, res) => {
        res.writeHead(200, { "content-type": "text/plain" });
        res.write("a");
        setTimeout(() => res.end(req.url === "/slow" ? "b" : "c"), req.url === "/slow" ? 2000 : 0);
      };
      server = await listenProxy(slow, "127.0.0.1", 0, { count: 0 }, limits(frontend));
      const c = net.connect(server.port, "127.0.0.1");
      c.on("error", () => undefined);
      let got = "";
      c.on("data", (d: Buffer) => (got += d.toString("latin1")));
      c.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
      await new Promise((r) => setTimeout(r, 2500));
      c.destroy();
      expect(got.match(/HTTP\/1\.1 200/g)).to.have.length(2);
      expect(got).to.match(/1\r\na\r\n1\r\nb\r\n0\r\n\r\n[^]*1\r\na\r\n1\r\nc\r\n0\r\n\r\n$/);
    });

    it("leaves no timer behind once drained", async () => {
      // The server's own timers (not the test's, mocha's, node's), unreferenced ones too (a
      // checking tick), which the event loop's list of active resources does not show. Not
      // node's cache of the Date header (its own second-long timer, made in whatever answer
      // comes first, through the server's wrapper of the handler on node's front end).
      const timers = new Set<number>();
      const hook = createHook({
        init: (id, type) => {
          const stack = type === "Timeout" ? (new Error().stack ?? "") : "";
          if (stack.includes("/src/front-door/") && !stack.includes("at utcDate ")) timers.add(id);
        },
        destroy: (id) => void timers.delete(id),
      }).enable();
      try {
        server = await listenProxy(big, "127.0.0.1", 0, { count: 0 }, limits(frontend));
        // A client holding most of an answer unread while the server drains.
        const s = net.connect(server.port, "127.0.0.1");
        s.on("error", () => undefined);
        s.pause();
        s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        await new Promise((r) => setTimeout(r, 500));
        await server.drain(0);
        s.destroy();
        await new Promise((r) => setTimeout(r, 100));
        expect(timers.size).to.equal(0);
      } finally {
        hook.disable();
      }
    });

    it("counts lingering connections against the connection limit", async () => {
      server = await listenProxy(
        refuse,
        "127.0.0.1",
        0,
        { count: 0 },
        {
          ...limits(frontend),
          maxConnections: 3,
        },
      );
      const held = [trickler(server.port), trickler(server.port), trickler(server.port)];
      try {
        await new Promise((resolve) => setTimeout(resolve, 300));
        const extra = trickler(server.port);
        // Closed at accept: the three lingering connections are still counted.
        expect(await within(extra.closed, 2000)).to.not.equal(-1);
        expect(await within(held[0]!.closed, 100)).to.equal(-1);
      } finally {
        for (const t of held) t.socket.destroy();
      }
    });

    it("does not wait for lingering connections past its drain", async () => {
      server = await listenProxy(refuse, "127.0.0.1", 0, { count: 0 }, limits(frontend));
      const held = [trickler(server.port), trickler(server.port)];
      try {
        await new Promise((resolve) => setTimeout(resolve, 300));
        const started = Date.now();
        await server.drain(200);
        const closed = await Promise.all(held.map((t) => within(t.closed, 2000)));
        // Lingering lasts 5 s; the drain cuts it.
        expect(Date.now() - started).to.be.below(1500);
        expect(closed).to.not.include(-1);
      } finally {
        for (const t of held) t.socket.destroy();
      }
    });
  });

/**
 * A client that leaves (or is cut by the send timeout) with a request pipelined behind an answer
 * it did not take: that request's call must learn it, or it holds the function's slot for good.
 */
for (const frontend of ["node", "own"] as const)
  describe(`gateway front door: a client leaving with pipelined calls (${frontend} front end)`, function () {
    this.timeout(30_000);
    let g: EchoGateway;
    before(async () => {
      g = await startEchoGateway(frontend, {}, 1);
    });
    after(async () => g?.close());

    it("frees the function's slot taken by a call queued behind an answer", async () => {
      const s = net.connect(g.port, "127.0.0.1");
      s.on("error", () => undefined);
      s.pause();
      await new Promise<void>((r) => s.once("connect", () => r()));
      // Two streamed answers far larger than the buffers, not read; one slot: the second call
      // gets it when the client leaves and the first is stopped.
      const get = (id: string) =>
        `GET /function/lb/echo?id=${id}&size=${8 << 20}&stream=1 HTTP/1.1\r\nHost: x\r\n\r\n`;
      s.write(get("p1") + get("p2"));
      await new Promise((r) => setTimeout(r, 500));
      s.destroy();
      const c = new RawClient(g.port);
      try {
        for (let i = 0; i < 3; i++) {
          c.send(`GET /function/lb/echo?id=n${i}&size=3 HTTP/1.1\r\nHost: x\r\n\r\n`);
          const r = await c.readReply({ timeoutMs: 5000 });
          expect(r.status, `call ${i} after the client left`).to.equal(200);
        }
      } finally {
        c.destroy();
      }
    });
  });
