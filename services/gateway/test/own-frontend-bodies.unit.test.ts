import type http from "node:http";
import net from "node:net";
import type { Readable } from "node:stream";
import { expect } from "chai";
import { BodySource } from "../src/front-door/body";
import { collectBytes, listen, parserProto, until } from "./front-ends";

const consume = parserProto?.consume;

/**
 * Attacks on the own front end holding a small-body request until its body is parsed
 * (own-connection.ts) and on BodySource.whole() (body.ts): order, exact bytes, keep-alive.
 */
const collect = async (stream: Readable): Promise<string> =>
  (await collectBytes(stream)).toString("latin1");

/** Handler as the proxy: BodySource, then (after `delayMs`) whole() ?? open(), answer "<url> <how> <len> <sum>". */
function proxyLike(delayMs: number, log: string[]): http.RequestListener {
  return (req, res) => {
    log.push(`start ${req.url} complete=${String(req.complete)}`);
    const length = Number(req.headers["content-length"] ?? 0);
    const body = length > 0 ? new BodySource(req, 1024 * 1024, 256 * 1024, 0, length) : null;
    const go = (): void => {
      if (body === null) {
        res.end(`${req.url} none 0`);
        return;
      }
      const w = body.whole();
      const p = w !== undefined ? Promise.resolve(w.toString("latin1")) : collect(body.open());
      void p.then(async (s) => {
        // a retry replays: must be the same bytes
        const again = await collect(body.open());
        res.end(
          `${req.url} ${w ? "whole" : "stream"} ${s.length} ${s === again ? "same" : "DIFF"} ${s.slice(0, 8)}|`,
        );
      });
    };
    if (delayMs > 0) setTimeout(go, delayMs);
    else go();
  };
}

/** A server on `frontend` with `handler` and one raw client on it, both closed after `fn`. */
async function session(
  frontend: "node" | "own",
  handler: http.RequestListener,
  fn: (c: ReturnType<typeof client>, port: number) => Promise<void>,
): Promise<void> {
  const server = await listen(frontend, handler);
  const c = client(server.port);
  try {
    await fn(c, server.port);
  } finally {
    c.sock.destroy();
    await server.close();
  }
}

function client(port: number): { sock: net.Socket; got: () => string } {
  const sock = net.connect(port, "127.0.0.1");
  let got = "";
  sock.on("data", (d: Buffer) => (got += d.toString("latin1")));
  sock.on("error", () => undefined);
  return { sock, got: () => got };
}

for (const frontend of ["own", "node"] as const) {
  describe(`a body taken whole or streamed late, then keep-alive (${frontend})`, () => {
    for (const size of [100, 20_000, 40_000, 65_000, 200_000]) {
      it(`answers the next request after a ${size} B body taken late`, async () => {
        const log: string[] = [];
        await session(frontend, proxyLike(40, log), async (c) => {
          const body = "q".repeat(size);
          c.sock.write(`POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: ${size}\r\n\r\n${body}`);
          await until(() => c.got().includes("/a "));
          expect(c.got()).to.include(`/a `);
          expect(c.got()).to.include(` ${size} same`);
          c.sock.write("GET /b HTTP/1.1\r\nhost: x\r\n\r\n");
          await until(() => c.got().includes("/b none 0"));
        });
      });
    }
  });
}

for (const reads of ["consume", "data"] as const)
  describe(`held small-body requests keep their order (own, ${reads})`, () => {
    before(() => {
      if (reads === "data" && parserProto) parserProto.consume = undefined;
    });
    after(() => {
      if (parserProto) parserProto.consume = consume;
    });
    it("pipelined small-body requests in one write: started and answered in order, exact bodies", async () => {
      const log: string[] = [];
      const delays: Record<string, number> = { "/a": 60, "/b": 0, "/c": 10 };
      const handler: http.RequestListener = (req, res) => {
        log.push(`start ${req.url}`);
        const length = Number(req.headers["content-length"] ?? 0);
        const body = length > 0 ? new BodySource(req, 1024 * 1024, 256 * 1024, 0, length) : null;
        setTimeout(
          () => {
            const w = body?.whole();
            const p =
              body === null
                ? Promise.resolve("")
                : w
                  ? Promise.resolve(w.toString())
                  : collect(body.open());
            void p.then((s) => res.end(`[${req.url}:${s}]`));
          },
          delays[req.url ?? ""] ?? 0,
        );
      };
      await session("own", handler, async (c) => {
        c.sock.write(
          "POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nAAAAA" +
            "POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nBBB" +
            "GET /c HTTP/1.1\r\nhost: x\r\n\r\n" +
            "POST /d HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nD",
        );
        await until(() => c.got().includes("[/d:D]"));
        const order = [...c.got().matchAll(/\[(\/\w):(\w*)\]/g)].map((m) => `${m[1]}:${m[2]}`);
        expect(order).to.deep.equal(["/a:AAAAA", "/b:BBB", "/c:", "/d:D"]);
        expect(log).to.deep.equal(["start /a", "start /b", "start /c", "start /d"]);
      });
    });

    it("a body split across reads with the next request pipelined behind its tail", async () => {
      const log: string[] = [];
      await session("own", proxyLike(0, log), async (c) => {
        c.sock.write("POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n01234");
        await new Promise((r) => setTimeout(r, 50));
        expect(log).to.deep.equal(["start /a complete=false"]);
        c.sock.write("56789POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nbb");
        await until(() => c.got().includes("/b "));
        expect(c.got()).to.include("/a stream 10 same 01234567|");
        expect(c.got()).to.include("/b whole 2 same bb|");
        expect(c.got().indexOf("/a ")).to.be.lessThan(c.got().indexOf("/b "));
      });
    });

    it("head alone in one read, body later: the handler starts at the read's end", async () => {
      const log: string[] = [];
      await session("own", proxyLike(0, log), async (c) => {
        c.sock.write("POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\n");
        await until(() => log.length === 1);
        c.sock.write("xyz");
        await until(() => c.got().includes("/a "));
        expect(c.got()).to.include("/a stream 3 same xyz|");
      });
    });

    it("Connection: close with a split small body: started once, answered, closed", async () => {
      const log: string[] = [];
      await session("own", proxyLike(0, log), async (c) => {
        let closed = false;
        c.sock.on("close", () => (closed = true));
        c.sock.write(
          "POST /a HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 4\r\n\r\nab",
        );
        await new Promise((r) => setTimeout(r, 30));
        c.sock.write("cdGET /b HTTP/1.1\r\nhost: x\r\n\r\n");
        await until(() => closed);
        expect(c.got()).to.include("/a stream 4 same abcd|");
        expect(c.got()).to.not.include("/b");
        expect(log).to.deep.equal(["start /a complete=false"]);
      });
    });

    it("a deferred request whose client goes away mid-body does not wedge the server", async () => {
      const log: string[] = [];
      await session("own", proxyLike(0, log), async (c, port) => {
        c.sock.write("POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc");
        await until(() => log.length === 1);
        c.sock.destroy();
        const d = client(port);
        d.sock.write("POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nok");
        await until(() => d.got().includes("/b whole 2"));
        d.sock.destroy();
      });
    });

    it("small body then a malformed request in the same read: the first is not half-answered", async () => {
      const log: string[] = [];
      await session("own", proxyLike(0, log), async (c) => {
        let closed = false;
        c.sock.on("close", () => (closed = true));
        c.sock.write("POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nabGARBAGE\r\n\r\n");
        await until(() => closed);
        // exactly one status line, and it is a whole HTTP message
        const statuses = c.got().match(/HTTP\/1\.1 \d\d\d/g) ?? [];
        expect(statuses.length).to.equal(1);
      });
    });
  });
