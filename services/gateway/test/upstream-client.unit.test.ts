import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { expect } from "chai";
import {
  closeUpstreamClients,
  upstreamClient,
  upstreamClientAvailable,
  type UpstreamHandler,
  type UpstreamRequest,
} from "../src/front-door/upstream-client";
import { HTTPParser } from "../src/front-door/upstream-parser";

/**
 * The proxy's bodiless-request client against a raw TCP server that answers with exactly the
 * bytes a test gives, so framing (and its refusal) is what is under test, not a server's.
 */
interface Seen {
  requests: string[];
  connections: number;
}

async function rawServer(
  answer: (req: string, n: number, sock: net.Socket) => void,
): Promise<{ url: string; seen: Seen; close(): Promise<void> }> {
  const seen: Seen = { requests: [], connections: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    seen.connections++;
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    let buf = "";
    sock.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      let i;
      while ((i = buf.indexOf("\r\n\r\n")) >= 0) {
        const req = buf.slice(0, i + 4);
        buf = buf.slice(i + 4);
        seen.requests.push(req);
        answer(req, seen.requests.length, sock);
      }
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

interface Outcome {
  status?: number;
  headers?: string[];
  body: string;
  connected: boolean;
  error?: Error & { code?: string };
}

function call(url: string, req: Partial<UpstreamRequest> = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = { body: "", connected: false };
    const handler: UpstreamHandler = {
      onConnect: () => (out.connected = true),
      onHeaders: (status, raw) => {
        out.status = status;
        out.headers = raw;
        return true;
      },
      onData: (chunk) => {
        out.body += chunk.toString();
        return true;
      },
      onComplete: () => resolve(out),
      onError: (err) => {
        out.error = err;
        resolve(out);
      },
    };
    upstreamClient(url).dispatch(
      { method: "GET", path: "/x", headers: [], headersTimeout: 0, bodyTimeout: 0, ...req },
      handler,
    );
  });
}

const OK = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

/** Where `consume` lives: taken away, connections read the socket in JS ('data' events). */
const parserProto = (HTTPParser as unknown as { prototype: { consume?: unknown } } | undefined)
  ?.prototype;
const consume = parserProto?.consume;

// Every guarantee on both read paths: the parser reading the socket in C++ (consume, the usual
// one) and the 'data' fallback a Node without consume gets, which nothing else would exercise.
for (const reads of ["consume", "data"] as const) {
  describe(`upstream client (bodiless requests; reading by ${reads})`, () => {
    before(() => {
      if (reads === "data" && parserProto) parserProto.consume = undefined;
    });
    after(() => {
      if (parserProto) parserProto.consume = consume;
    });
    afterEach(() => closeUpstreamClients());

    it("finds Node's parser binding on the Node versions we support (else the proxy uses undici)", () => {
      expect(upstreamClientAvailable).to.equal(true);
      // Without it every connection would silently take the slower 'data' path.
      if (reads === "consume") expect(typeof consume).to.equal("function");
    });

    it("sends one head with host and the given headers (no Connection header), and reuses the connection", async () => {
      const s = await rawServer((_req, _n, sock) => sock.write(OK));
      try {
        const a = await call(s.url, { headers: ["x-request-id", "r1", "accept", "*/*"] });
        const b = await call(s.url);
        expect(a).to.include({ status: 200, body: "hello", connected: true });
        expect(b).to.include({ status: 200, body: "hello" });
        expect(s.seen.connections).to.equal(1);
        const port = new URL(s.url).port;
        expect(s.seen.requests[0]).to.equal(
          `GET /x HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n` +
            "x-request-id: r1\r\naccept: */*\r\n\r\n",
        );
      } finally {
        await s.close();
      }
    });

    it("decodes a chunked body and passes 1xx answers by", async () => {
      const s = await rawServer((_req, _n, sock) =>
        sock.write(
          "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        ),
      );
      try {
        const a = await call(s.url);
        expect(a).to.include({ status: 200, body: "abcde" });
        expect((await call(s.url)).body).to.equal("abcde");
        expect(s.seen.connections).to.equal(1);
      } finally {
        await s.close();
      }
    });

    it("refuses a response with both Content-Length and chunked framing, and does not reuse it", async () => {
      const s = await rawServer((_req, n, sock) =>
        sock.write(
          n === 1
            ? "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            : OK,
        ),
      );
      try {
        const a = await call(s.url);
        expect(a.error?.code).to.equal("HPE_INVALID_TRANSFER_ENCODING");
        expect(a.status).to.equal(undefined);
        expect((await call(s.url)).body).to.equal("hello");
        expect(s.seen.connections).to.equal(2);
      } finally {
        await s.close();
      }
    });

    it("drops a connection whose response carried extra bytes, and one that talks while idle", async () => {
      const s = await rawServer((_req, n, sock) => {
        if (n === 1) sock.write(OK + "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforge");
        else {
          sock.write(OK);
          setTimeout(() => sock.write("HTTP/1.1 200 OK\r\n"), 20);
        }
      });
      try {
        // The smuggled second answer must never be taken for the next request's.
        const a = await call(s.url);
        expect(a.body).to.equal("hello");
        const b = await call(s.url);
        expect(b.error, String(b.error)).to.equal(undefined);
        expect(b.body).to.equal("hello");
        await new Promise((r) => setTimeout(r, 60));
        const c = await call(s.url);
        expect(c.body).to.equal("hello");
        expect(s.seen.connections).to.equal(3);
      } finally {
        await s.close();
      }
    });

    it("does not reuse a connection the instance closes (Connection: close, read to the end)", async () => {
      const s = await rawServer((_req, _n, sock) => {
        sock.end("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close");
      });
      try {
        expect((await call(s.url)).body).to.equal("until-close");
        expect((await call(s.url)).body).to.equal("until-close");
        expect(s.seen.connections).to.equal(2);
      } finally {
        await s.close();
      }
    });

    it("fails a response cut short with UND_ERR_SOCKET after connecting", async () => {
      const s = await rawServer((_req, _n, sock) => {
        sock.end("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal");
      });
      try {
        const a = await call(s.url);
        expect(a.connected).to.equal(true);
        expect(a.error?.code).to.equal("UND_ERR_SOCKET");
        expect(a.body).to.equal("hal");
      } finally {
        await s.close();
      }
    });

    it("reports a refused connection without onConnect (the function did not run)", async () => {
      const s = await rawServer(() => undefined);
      await s.close();
      const a = await call(s.url);
      expect(a.connected).to.equal(false);
      expect(a.error?.code).to.equal("ECONNREFUSED");
    });

    it("answers HEAD without waiting for a body", async () => {
      const s = await rawServer((_req, _n, sock) =>
        sock.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
      );
      try {
        const a = await call(s.url, { method: "HEAD" });
        expect(a).to.include({ status: 200, body: "" });
      } finally {
        await s.close();
      }
    });

    it("keeps every header of a long head (over 32 pairs)", async () => {
      let head = "HTTP/1.1 200 OK\r\n";
      for (let i = 0; i < 40; i++) head += `x-h${i}: v${i}\r\n`;
      const s = await rawServer((_req, _n, sock) => sock.write(head + "Content-Length: 0\r\n\r\n"));
      try {
        const a = await call(s.url);
        expect(a.headers?.length).to.equal(82);
        expect(a.headers?.[78]).to.equal("x-h39");
      } finally {
        await s.close();
      }
    });

    it("refuses header values and paths undici would refuse (UND_ERR_INVALID_ARG)", async () => {
      const s = await rawServer((_req, _n, sock) => sock.write(OK));
      try {
        const a = await call(s.url, { headers: ["x-fizz-params-a", "v\r\nx-evil: 1"] });
        expect(a.error?.code).to.equal("UND_ERR_INVALID_ARG");
        const b = await call(s.url, { path: "/a b" });
        expect(b.error?.code).to.equal("UND_ERR_INVALID_ARG");
        // Names: tchars only, at least one; values: no control character but HTAB, nothing
        // past latin1 (undici's rules, checked by hand in upstream-client.ts).
        const refused: [string, string][] = [
          ["", "v"],
          ["x evil", "v"],
          ["x:evil", "v"],
          ["x(evil)", "v"],
          ["x-é", "v"],
          ["x-a", "v\nx"],
          ["x-a", "v\0"],
          ["x-a", "v\x7f"],
          ["x-a", "v\x1f"],
          ["x-a", "v\u0100"],
          ["x-a", "\u{1F600}"],
        ];
        for (const [n, v] of refused) {
          const r = await call(s.url, { headers: [n, v] });
          expect(r.error?.code, JSON.stringify([n, v])).to.equal("UND_ERR_INVALID_ARG");
        }
        expect(s.seen.requests).to.have.length(0);
        const ok = await call(s.url, {
          headers: ["x-A_b.c!#$%&'*+^`|~9", "tab\there ~ caf\xe9 \xff", "x-empty", ""],
        });
        expect(ok.error).to.equal(undefined);
        expect(s.seen.requests).to.have.length(1);
      } finally {
        await s.close();
      }
    });

    it("times out a request waiting for its answer, short or long timeout, not before it", async () => {
      const s = await rawServer(() => undefined);
      try {
        for (const ms of [80, 450]) {
          const t = Date.now();
          const a = await call(s.url, { answerTimeout: ms, headersTimeout: ms + 1000 });
          const elapsed = Date.now() - t;
          expect(a.error?.code).to.equal("UND_ERR_HEADERS_TIMEOUT");
          expect(a.connected).to.equal(true);
          // Never before it (how late it may come is the proxy's 504 test, on a quiet machine).
          expect(elapsed).to.be.at.least(ms - 5);
        }
      } finally {
        await s.close();
      }
    });

    it("times out a quiet body (UND_ERR_BODY_TIMEOUT)", async () => {
      const s = await rawServer((_req, _n, sock) =>
        sock.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"),
      );
      try {
        const a = await call(s.url, { bodyTimeout: 150 });
        expect(a.body).to.equal("abc");
        expect(a.error?.code).to.equal("UND_ERR_BODY_TIMEOUT");
      } finally {
        await s.close();
      }
    });

    it("never passes a response's trailers on as the next response's headers", async () => {
      const s = await rawServer((_req, n, sock) =>
        sock.write(
          n === 1
            ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: set-cookie\r\n\r\n" +
                "3\r\nabc\r\n0\r\nset-cookie: session=first-client\r\n\r\n"
            : OK,
        ),
      );
      try {
        const a = await call(s.url);
        expect(a).to.include({ status: 200, body: "abc" });
        const b = await call(s.url);
        expect(s.seen.connections).to.equal(1);
        expect(b.headers).to.deep.equal(["Content-Length", "5"]);
      } finally {
        await s.close();
      }
    });

    it("does not time out a body paused for a slow client (as undici), and times it from the resume", async () => {
      const s = await rawServer((_req, _n, sock) => {
        sock.write("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc");
        setTimeout(() => sock.write("def"), 20);
      });
      try {
        const out = await new Promise<Outcome>((resolve) => {
          const o: Outcome = { body: "", connected: false };
          let resume = (): void => undefined;
          upstreamClient(s.url).dispatch(
            { method: "GET", path: "/x", headers: [], headersTimeout: 0, bodyTimeout: 150 },
            {
              onConnect: () => (o.connected = true),
              onHeaders: (status, _raw, r) => {
                o.status = status;
                resume = r;
                return true;
              },
              onData: (chunk) => {
                o.body += chunk.toString();
                if (o.body !== "abc") return true;
                // The client reads nothing for longer than the body timeout.
                setTimeout(resume, 450);
                return false;
              },
              onComplete: () => resolve(o),
              onError: (err) => {
                o.error = err;
                resolve(o);
              },
            },
          );
        });
        expect(out.error, String(out.error)).to.equal(undefined);
        expect(out).to.include({ status: 200, body: "abcdef" });
      } finally {
        await s.close();
      }
    });

    it("reads nothing more from the instance while paused for a slow client, and the rest after resume", async () => {
      const s = await rawServer((_req, _n, sock) => {
        sock.write("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc");
        setTimeout(() => sock.write("def"), 20);
      });
      try {
        let body = "";
        let resume = (): void => undefined;
        const done = new Promise<Error | undefined>((resolve) => {
          upstreamClient(s.url).dispatch(
            { method: "GET", path: "/x", headers: [], headersTimeout: 0, bodyTimeout: 0 },
            {
              onConnect: () => undefined,
              onHeaders: (_status, _raw, r) => {
                resume = r;
                return true;
              },
              onData: (chunk) => {
                body += chunk.toString();
                return body !== "abc";
              },
              onComplete: () => resolve(undefined),
              onError: resolve,
            },
          );
        });
        // "def" was sent at 20 ms: while paused it stays in the socket, not in the handler.
        await new Promise((r) => setTimeout(r, 200));
        expect(body).to.equal("abc");
        resume();
        expect(await done).to.equal(undefined);
        expect(body).to.equal("abcdef");
      } finally {
        await s.close();
      }
    });
  });
}

// Against Node's own server, once: the 'data' pass above takes `consume` away from the parser
// Node's server uses too.
describe("upstream client against a Node HTTP server", () => {
  it("keeps the connection to a Node HTTP server without asking for keep-alive (HTTP/1.1's default)", async () => {
    // The head carries no `connection: keep-alive`: a server must keep the connection anyway,
    // or every call would pay a new connection.
    let connections = 0;
    const server = http.createServer({ keepAlive: true }, (req, res) => {
      res.end(req.headers.connection === undefined ? "none" : "some");
    });
    server.on("connection", () => connections++);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const a = await call(url);
      const b = await call(url);
      const c = await call(url);
      expect([a.body, b.body, c.body]).to.deep.equal(["none", "none", "none"]);
      expect(connections).to.equal(1);
    } finally {
      closeUpstreamClients();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

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
