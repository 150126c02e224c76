import { createHook } from "node:async_hooks";
import { randomBytes } from "node:crypto";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { closeUpstreamClients, upstreamClient } from "../src/front-door/upstream-client";
import { HTTPParser } from "../src/front-door/upstream-parser";

/**
 * The upstream client's reads, on both paths (the parser reading the socket in C++ with `consume`,
 * and the JS 'data' fallback): bodies larger than the socket buffer through a slow client, the
 * instance closing while reads are stopped, parse errors, a smuggled answer when the connection is
 * reused at once, and every parser closed whatever ends the connection (one left open per
 * connection is a leak the soak would show as RSS growth).
 */
interface Server {
  url: string;
  connections: number;
  close(): Promise<void>;
}

/** Answers each request (one read of the socket) with `answer(n)`, n counted over all connections. */
async function server(answer: (sock: net.Socket, n: number) => void): Promise<Server> {
  const sockets = new Set<net.Socket>();
  let n = 0;
  const srv = net.createServer((sock) => {
    out.connections++;
    sockets.add(sock);
    sock.on("error", () => undefined);
    sock.on("data", () => answer(sock, ++n));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const out: Server = {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    connections: 0,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
  return out;
}

interface Outcome {
  body: Buffer;
  error?: Error & { code?: string };
}

/** One GET; `slowMs`: the handler pauses after every chunk and resumes that much later. */
function get(url: string, slowMs = 0, onComplete?: () => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let resume = (): void => undefined;
    upstreamClient(url).dispatch(
      { method: "GET", path: "/", headers: [], headersTimeout: 0, bodyTimeout: 0 },
      {
        onConnect: () => undefined,
        onHeaders: (_s, _r, r) => {
          resume = r;
          return true;
        },
        onData: (chunk) => {
          // Kept as given, not copied: as the proxy keeps chunks it holds or has not yet written.
          chunks.push(chunk);
          if (slowMs === 0) return true;
          setTimeout(() => resume(), slowMs);
          return false;
        },
        onComplete: () => {
          onComplete?.();
          resolve({ body: Buffer.concat(chunks) });
        },
        onError: (error) => resolve({ body: Buffer.concat(chunks), error }),
      },
    );
  });
}

const parserProto = (HTTPParser as unknown as { prototype: { consume?: unknown } } | undefined)
  ?.prototype;
const consume = parserProto?.consume;

for (const reads of ["consume", "data"] as const) {
  describe(`upstream client reads (by ${reads})`, function () {
    this.timeout(20_000);
    before(() => {
      if (reads === "data" && parserProto) parserProto.consume = undefined;
    });
    after(() => {
      if (parserProto) parserProto.consume = consume;
    });
    afterEach(() => closeUpstreamClients());

    it("passes bodies larger than the socket buffer intact through a slow client, twice on one connection", async () => {
      const body = randomBytes(3 << 20);
      const s = await server((sock) => {
        sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
        sock.write(body);
      });
      try {
        for (let i = 0; i < 2; i++) {
          const o = await get(s.url, 1);
          expect(o.error, String(o.error)).to.equal(undefined);
          expect(o.body.equals(body), "body intact").to.equal(true);
        }
        expect(s.connections).to.equal(1);
      } finally {
        await s.close();
      }
    });

    it("sees the instance's close once a paused read resumes: an end-framed body completes, a short one fails", async () => {
      const body = randomBytes(1 << 20);
      const s = await server((sock, n) => {
        const framing = n === 1 ? "Connection: close" : `Content-Length: ${body.length + 5}`;
        sock.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\n${framing}\r\n\r\n`), body]));
      });
      try {
        const whole = await get(s.url, 1);
        expect(whole.error, String(whole.error)).to.equal(undefined);
        expect(whole.body.equals(body)).to.equal(true);
        const short = await get(s.url, 1);
        expect(short.error?.code).to.equal("UND_ERR_SOCKET");
        expect(s.connections).to.equal(2);
      } finally {
        await s.close();
      }
    });

    it("fails a body the parser refuses mid-stream, and does not reuse its connection", async () => {
      const s = await server((sock, n) => {
        if (n > 1) return void sock.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        sock.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
        setTimeout(() => sock.write("zz\r\n"), 20);
      });
      try {
        const bad = await get(s.url);
        expect(bad.error?.code).to.equal("HPE_INVALID_CHUNK_SIZE");
        expect((await get(s.url)).body.toString()).to.equal("ok");
        expect(s.connections).to.equal(2);
      } finally {
        await s.close();
      }
    });

    for (const when of ["microtask", "nextTick"] as const) {
      it(`never takes a second answer sent with the first for a request sent in a ${when} after the first completed`, async () => {
        // Consume relies on Node running no task queue between the parser's callbacks within one
        // read (it does so only after the read): otherwise the reused connection would be asked
        // before the parser reached the smuggled answer, and take it.
        const s = await server((sock, n) => {
          const ok = (text: string) => `HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n${text}`;
          sock.write(n === 1 ? ok("first") + ok("forge") : ok("right"));
        });
        try {
          const second = await new Promise<Outcome>((resolve) => {
            const next = (): void => void get(s.url).then(resolve);
            void get(s.url, 0, () => {
              if (when === "microtask") void Promise.resolve().then(next);
              else process.nextTick(next);
            });
          });
          expect(second.error, String(second.error)).to.equal(undefined);
          expect(second.body.toString()).to.equal("right");
        } finally {
          await s.close();
        }
      });
    }

    it("closes every parser, whatever ends the connection", async () => {
      // Node's response parsers are async resources: each initialize is an init, each close a destroy.
      const open = new Set<number>();
      let created = 0;
      const hook = createHook({
        init(id, type) {
          if (type !== "HTTPCLIENTREQUEST") return;
          open.add(id);
          created++;
        },
        destroy(id) {
          open.delete(id);
        },
      }).enable();
      const answers = [
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", // reused, then closed idle
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", // bytes past the answer
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok", // refused
        "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok", // cut short by end()
      ];
      const s = await server((sock, n) => {
        const k = n % (answers.length + 1);
        if (k === answers.length) sock.destroy();
        else if (k === 3) sock.end(answers[k] as string);
        else sock.write(answers[k] as string);
      });
      try {
        for (let i = 0; i < 40; i++) await Promise.all([get(s.url), get(s.url), get(s.url, 1)]);
        closeUpstreamClients();
        // Parsers are closed on the immediate after their connection ends.
        await new Promise((r) => setTimeout(r, 100));
        expect(created, "parsers seen").to.be.greaterThan(20);
        expect(open.size, "parsers left open").to.equal(0);
      } finally {
        hook.disable();
        await s.close();
      }
    });
  });
}
