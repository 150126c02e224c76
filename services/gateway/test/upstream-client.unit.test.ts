import http from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import {
  closeUpstreamClients,
  upstreamClient,
  upstreamClientAvailable,
} from "../src/front-door/upstream-client";
import { HTTPParser } from "../src/front-door/upstream-parser";
import { call, OK, rawServer, type Outcome } from "./upstream-fixtures";

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
