import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { expect } from "chai";
import { closeUpstreamClients } from "../src/front-door/upstream-client";
import { call, OK, rawServer } from "./upstream-fixtures";

/** The upstream client with request bodies of a known length (upstream-body.ts). */
describe("upstream client (request bodies of a known length)", () => {
  afterEach(() => closeUpstreamClients());

  async function echoServer(
    handle?: (req: http.IncomingMessage, res: http.ServerResponse) => void,
  ): Promise<{ url: string; connections: () => number; close(): Promise<void> }> {
    let connections = 0;
    const server = http.createServer(
      handle ??
        ((req, res) => {
          const chunks: Buffer[] = [];
          req.on("data", (c: Buffer) => chunks.push(c));
          req.on("end", () =>
            res.end(
              JSON.stringify({
                length: req.headers["content-length"] ?? null,
                te: req.headers["transfer-encoding"] ?? null,
                body: Buffer.concat(chunks).toString(),
              }),
            ),
          );
        }),
    );
    server.on("connection", () => connections++);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      connections: () => connections,
      close: async () => {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
      },
    };
  }

  it("sends the body after its head under its own content-length, dropping framing headers, and reuses the connection", async () => {
    const s = await echoServer();
    try {
      const headers = ["content-length", "999", "transfer-encoding", "chunked", "x-a", "1"];
      const a = await call(s.url, {
        method: "POST",
        headers,
        body: Readable.from([Buffer.from("hello "), Buffer.from("world")]),
        bodyLength: 11,
      });
      const b = await call(s.url, {
        method: "PUT",
        headers,
        body: Readable.from([Buffer.from("again")]),
        bodyLength: 5,
      });
      expect(JSON.parse(a.body)).to.deep.equal({ length: "11", te: null, body: "hello world" });
      expect(JSON.parse(b.body)).to.deep.equal({ length: "5", te: null, body: "again" });
      expect(s.connections()).to.equal(1);
    } finally {
      await s.close();
    }
  });

  it("sends content-length: 0 for a bodiless POST, none for a GET", async () => {
    const s = await echoServer();
    try {
      const post = await call(s.url, { method: "POST", headers: ["content-length", "7"] });
      const get = await call(s.url, { method: "GET" });
      expect(JSON.parse(post.body)).to.include({ length: "0", body: "" });
      expect(JSON.parse(get.body)).to.include({ length: null, body: "" });
    } finally {
      await s.close();
    }
  });

  it("paces a large body by the socket: nothing is read ahead while the instance does not read", async () => {
    let paused: Promise<void> = Promise.resolve();
    let produced = 0;
    const s = await echoServer((req, res) => {
      let got = 0;
      req.once("data", () => {
        req.pause();
        paused = new Promise((r) =>
          setTimeout(() => {
            r();
            req.resume();
          }, 300),
        );
      });
      req.on("data", (c: Buffer) => (got += c.length));
      req.on("end", () => res.end(String(got)));
    });
    const chunk = Buffer.alloc(64 * 1024, 1);
    const total = 512 * chunk.length; // 32 MiB
    async function* source() {
      for (let i = 0; i < 512; i++) {
        produced += chunk.length;
        yield await Promise.resolve(chunk);
      }
    }
    try {
      const pending = call(s.url, {
        method: "POST",
        body: Readable.from(source()),
        bodyLength: total,
      });
      await new Promise((r) => setTimeout(r, 200));
      await paused;
      const aheadWhilePaused = produced;
      const out = await pending;
      expect(out.body).to.equal(String(total));
      // Without backpressure the whole 32 MiB would be read (and held) at once.
      expect(aheadWhilePaused).to.be.below(total / 2);
    } finally {
      await s.close();
    }
  });

  it("never writes past the length in the head: a longer body fails and the instance gets the head alone", async () => {
    const received: Buffer[] = [];
    const server = net.createServer((sock) => {
      sock.on("data", (d: Buffer) => received.push(d));
      sock.on("error", () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const out = await call(url, {
        method: "POST",
        body: Readable.from([Buffer.from("abcd"), Buffer.from("GET /smuggled HTTP/1.1\r\n\r\n")]),
        bodyLength: 4,
      });
      expect(out.error?.code).to.equal("UND_ERR_REQ_CONTENT_LENGTH_MISMATCH");
      await new Promise((r) => setTimeout(r, 50));
      const text = Buffer.concat(received).toString("latin1");
      expect(text.endsWith("content-length: 4\r\n\r\nabcd")).to.equal(true, text);
      expect(text).not.to.include("smuggled");
    } finally {
      closeUpstreamClients();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it("fails a body that ends short, and a body whose stream fails (with its own error), on a connection not reused", async () => {
    const s = await echoServer();
    try {
      const short = await call(s.url, {
        method: "POST",
        body: Readable.from([Buffer.from("abc")]),
        bodyLength: 10,
      });
      expect(short.error?.code).to.equal("UND_ERR_REQ_CONTENT_LENGTH_MISMATCH");
      const broken = new Readable({ read() {} });
      broken.push("part");
      setTimeout(() => broken.destroy(new Error("client closed the request body")), 20);
      const failed = await call(s.url, { method: "POST", body: broken, bodyLength: 100 });
      expect(failed.error?.message).to.equal("client closed the request body");
      const ok = await call(s.url, {
        method: "POST",
        body: Readable.from([Buffer.from("fine")]),
        bodyLength: 4,
      });
      expect(JSON.parse(ok.body)).to.include({ body: "fine" });
      expect(s.connections()).to.equal(3);
    } finally {
      await s.close();
    }
  });

  it("takes an answer given before the body was sent whole, stops sending, and does not reuse the connection", async () => {
    const s = await rawServer((_req, _n, sock) => sock.write(OK));
    let stopped = false;
    const body = new Readable({
      read() {
        this.push(Buffer.alloc(16 * 1024));
      },
      destroy(err, cb) {
        stopped = true;
        cb(err);
      },
    });
    try {
      const a = await call(s.url, { method: "POST", body, bodyLength: 1024 * 1024 * 1024 });
      expect(a).to.include({ status: 200, body: "hello" });
      expect(stopped).to.equal(true);
      const b = await call(s.url);
      expect(b).to.include({ status: 200 });
      expect(s.seen.connections).to.equal(2);
    } finally {
      await s.close();
    }
  });

  it("reuses a connection whose body was written whole though its stream had not ended when the answer came", async () => {
    // The stream never emits 'end'; the instance answers once it has the length in the head.
    const s = await rawServer((_req, n, sock) => {
      if (n === 1) setTimeout(() => sock.write(OK), 30);
      else sock.write(OK);
    });
    let stopped = false;
    const body = new Readable({
      read() {},
      destroy(err, cb) {
        stopped = true;
        cb(err);
      },
    });
    body.push(Buffer.from("abcd"));
    try {
      const a = await call(s.url, { method: "POST", body, bodyLength: 4 });
      expect(a).to.include({ status: 200, body: "hello" });
      expect(stopped).to.equal(true);
      const b = await call(s.url);
      expect(b).to.include({ status: 200 });
      expect(s.seen.connections).to.equal(1);
      // The body's bytes came before the next request on that connection, and nothing else did.
      expect(s.seen.requests[1]?.startsWith("abcdGET /x HTTP/1.1\r\n")).to.equal(true);
    } finally {
      await s.close();
    }
  });

  it("fails a body stream that fails or closes before the connection is up, without an unhandled 'error'", async () => {
    // A retry's body (body.ts) is read from the client while its new connection is still being
    // made: a client that goes away then fails the stream before the connection listens to it.
    const s = await rawServer((_req, _n, sock) => sock.write(OK));
    try {
      const failing = new Readable({ read() {} });
      const failed = call(s.url, { method: "POST", body: failing, bodyLength: 10 });
      failing.destroy(new Error("client closed the request body"));
      const closing = new Readable({ read() {} });
      const closed = call(s.url, { method: "POST", body: closing, bodyLength: 10 });
      closing.destroy();
      expect((await failed).error?.message).to.equal("client closed the request body");
      expect((await closed).error?.code).to.equal("UND_ERR_ABORTED");
    } finally {
      await s.close();
    }
  });
});
