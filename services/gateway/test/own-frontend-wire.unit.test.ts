import type http from "node:http";
import net from "node:net";
import { expect } from "chai";
import { listenOwn } from "../src/front-door/own-server";
import type { ProxyServer, ServerLimits } from "../src/front-door/server-types";

const limits: ServerLimits = {
  maxConnections: 100,
  headersTimeoutMs: 2000,
  requestTimeoutMs: 5000,
  keepAliveTimeoutMs: 5000,
  frontend: "own",
};

/** Every byte value, then UTF-8 that is not latin1, then bytes again: `size` of them. */
function awkward(size: number): Buffer {
  const out = Buffer.alloc(size);
  const utf8 = Buffer.from("héllo ✓ 𝄞 \r\n0\r\n\r\n", "utf8");
  for (let i = 0; i < size; i++)
    out[i] = i < 256 ? i : i < 256 + utf8.length ? utf8[i - 256]! : 255 - (i % 256);
  return out;
}

const piece = (i: number, n: number): Buffer => awkward(n).fill(i, 0, Math.min(n, 1));

const TEXT = "héllo ✓ 𝄞 — ünïcödé";
/** A fixed Date: the head is then known byte for byte. */
const DATE = "date";
const KEEP = "connection: keep-alive\r\nkeep-alive: timeout=5\r\n";
const CLOSE = "connection: close\r\n";

/** What each test's URL asks the handler to answer. */
function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const u = new URL(req.url ?? "/", "http://x");
  const q = u.searchParams;
  const size = Number(q.get("size") ?? 0);
  const sizes = (q.get("sizes") ?? "").split(",").filter(Boolean).map(Number);
  const h = { date: DATE };
  switch (u.pathname) {
    case "/cl-end": // a length, the body whole in end()
      res.writeHead(200, { ...h, "content-length": size });
      res.end(awkward(size));
      return;
    case "/cl-write": // a length, the body in write()s then end()
      res.writeHead(200, { ...h, "content-length": sizes.reduce((a, b) => a + b, 0) });
      for (const [i, n] of sizes.entries()) res.write(awkward(n).fill(i, 0, Math.min(n, 1)));
      res.end();
      return;
    case "/chunked": // no length: a chunk per write, the last piece in end() when `last`
      res.writeHead(200, h);
      for (const [i, n] of sizes.entries()) res.write(awkward(n).fill(i, 0, Math.min(n, 1)));
      if (q.has("last")) res.end(awkward(size));
      else res.end();
      return;
    case "/text-end": // a JS string in end(), after a head without a length
      res.writeHead(200, h);
      res.end(TEXT);
      return;
    case "/text-chunked":
      res.writeHead(200, h);
      res.write(TEXT);
      res.end(TEXT);
      return;
    case "/u8-end": // a Uint8Array, not a Buffer (ServerResponse takes both)
      res.writeHead(200, { ...h, "content-length": size });
      res.end(new Uint8Array(awkward(size)));
      return;
    case "/u8-chunked":
      res.writeHead(200, h);
      res.write(new Uint8Array(awkward(size)));
      res.end(new Uint8Array(awkward(size)));
      return;
    case "/status": // a bodiless status, written a body all the same
      res.writeHead(Number(q.get("s")), { ...h, "content-length": size });
      res.write(awkward(size));
      res.end(awkward(size));
      return;
    case "/stream": // `count` pieces of `size` bytes as fast as write() lets, `length` or chunked
      stream(res, size, Number(q.get("count")), q.has("length"));
      return;
    default:
      res.writeHead(404, { ...h, "content-length": 0 });
      res.end();
  }
}

/** What /stream saw: bytes written when write() first said false, and how many drains. */
const streamed = { beforeFalse: -1, drains: 0 };

/** Writes pieces while write() says true; on false, waits for 'drain' (as proxy.ts does). */
function stream(res: http.ServerResponse, size: number, count: number, length: boolean): void {
  streamed.beforeFalse = -1;
  streamed.drains = 0;
  res.writeHead(200, length ? { date: DATE, "content-length": size * count } : { date: DATE });
  let i = 0;
  const more = (): void => {
    while (i < count) {
      const ok = res.write(piece(i % 256, size));
      i++;
      if (!ok) {
        if (streamed.beforeFalse < 0) streamed.beforeFalse = i * size;
        res.once("drain", () => {
          streamed.drains++;
          more();
        });
        return;
      }
    }
    res.end();
  };
  more();
}

/** Sends `data`, returns every byte until the server closes. */
function exchange(port: number, data: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const s = net.connect(port, "127.0.0.1", () => s.write(data, "latin1"));
    s.on("data", (d: Buffer) => parts.push(d));
    s.on("error", reject);
    s.on("close", () => resolve(Buffer.concat(parts)));
    setTimeout(() => {
      s.destroy();
      reject(new Error(`no close: ${Buffer.concat(parts).toString("latin1").slice(0, 300)}`));
    }, 5000).unref();
  });
}

const get = (path: string, close = true, method = "GET"): string =>
  `${method} ${path} HTTP/1.1\r\nHost: x\r\n${close ? "Connection: close\r\n" : ""}\r\n`;

const head = (status: string, fields: string, close = true): string =>
  `HTTP/1.1 ${status}\r\ndate: ${DATE}\r\n${fields}${close ? CLOSE : KEEP}\r\n`;

const chunk = (b: Buffer): Buffer =>
  Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from("\r\n")]);

function expectBytes(got: Buffer, want: Buffer): void {
  if (got.equals(want)) return;
  let at = 0;
  while (at < got.length && got[at] === want[at]) at++;
  const show = (b: Buffer): string => JSON.stringify(b.subarray(at, at + 60).toString("latin1"));
  expect.fail(
    `bytes differ at ${at} (got ${got.length}, want ${want.length}): ${show(got)} vs ${show(want)}`,
  );
}

/**
 * The own front end's answers on the wire, byte for byte: a body inside its head's string (up to
 * 8 KiB) or beside it, a chunk with its size line and end, strings, Uint8Arrays, bodiless
 * statuses, HEAD, pipelining. A byte changed or a framing off by one here is a response split.
 */
describe("own front end: answer bytes on the wire", () => {
  let server: ProxyServer;
  let port: number;

  before(async () => {
    server = await listenOwn(handler, "127.0.0.1", 0, { count: 0 }, limits, 5000);
    port = server.port;
  });
  after(async () => {
    await server?.drain(100);
  });

  for (const size of [1, 255, 8191, 8192, 8193, 16_384, 70_000]) {
    it(`writes a ${size}-byte body given whole with its length exactly`, async () => {
      const got = await exchange(port, get(`/cl-end?size=${size}`));
      const want = Buffer.concat([
        Buffer.from(head("200 OK", `content-length: ${size}\r\n`), "latin1"),
        awkward(size),
      ]);
      expectBytes(got, want);
    });
  }

  it("writes a body of several writes around 8 KiB after its head exactly", async () => {
    const sizes = [8192, 8193, 1, 8191, 0, 3];
    const got = await exchange(port, get(`/cl-write?sizes=${sizes.join(",")}`));
    const total = sizes.reduce((a, b) => a + b, 0);
    const want = Buffer.concat([
      Buffer.from(head("200 OK", `content-length: ${total}\r\n`), "latin1"),
      ...sizes.map((n, i) => piece(i, n)),
    ]);
    expectBytes(got, want);
  });

  for (const sizes of [[1], [8192], [8193], [8191, 8192, 8193], [300, 0, 5, 70_000, 2]]) {
    it(`writes chunks of ${sizes.join(", ")} bytes each framed exactly, no empty chunk but the last`, async () => {
      const got = await exchange(port, get(`/chunked?sizes=${sizes.join(",")}`));
      const want = Buffer.concat([
        Buffer.from(head("200 OK", "transfer-encoding: chunked\r\n"), "latin1"),
        ...sizes.flatMap((n, i) => (n > 0 ? [chunk(piece(i, n))] : [])),
        Buffer.from("0\r\n\r\n"),
      ]);
      expectBytes(got, want);
    });
  }

  for (const size of [0, 1, 8192, 8193]) {
    it(`writes a last chunk of ${size} bytes given in end() with the end of the body`, async () => {
      const got = await exchange(port, get(`/chunked?sizes=7&last=1&size=${size}`));
      const want = Buffer.concat([
        Buffer.from(head("200 OK", "transfer-encoding: chunked\r\n"), "latin1"),
        chunk(piece(0, 7)),
        ...(size > 0 ? [chunk(awkward(size))] : []),
        Buffer.from("0\r\n\r\n"),
      ]);
      expectBytes(got, want);
    });
  }

  it("writes a JS string given to end() as UTF-8, its chunk size in bytes", async () => {
    const text = Buffer.from(TEXT, "utf8");
    const got = await exchange(port, get("/text-end"));
    // writeHead without a length, then end(string): chunked, the string as one chunk.
    const want = Buffer.concat([
      Buffer.from(head("200 OK", "transfer-encoding: chunked\r\n"), "latin1"),
      chunk(text),
      Buffer.from("0\r\n\r\n"),
    ]);
    expectBytes(got, want);
  });

  it("writes JS string chunks as UTF-8, each size line in bytes", async () => {
    const text = Buffer.from(TEXT, "utf8");
    const got = await exchange(port, get("/text-chunked"));
    const want = Buffer.concat([
      Buffer.from(head("200 OK", "transfer-encoding: chunked\r\n"), "latin1"),
      chunk(text),
      chunk(text),
      Buffer.from("0\r\n\r\n"),
    ]);
    expectBytes(got, want);
  });

  for (const size of [5, 8192, 8193]) {
    it(`writes a ${size}-byte Uint8Array body (not a Buffer) byte for byte`, async () => {
      const got = await exchange(port, get(`/u8-end?size=${size}`));
      const want = Buffer.concat([
        Buffer.from(head("200 OK", `content-length: ${size}\r\n`), "latin1"),
        awkward(size),
      ]);
      expectBytes(got, want);
    });

    it(`writes ${size}-byte Uint8Array chunks byte for byte`, async () => {
      const got = await exchange(port, get(`/u8-chunked?size=${size}`));
      const want = Buffer.concat([
        Buffer.from(head("200 OK", "transfer-encoding: chunked\r\n"), "latin1"),
        chunk(awkward(size)),
        chunk(awkward(size)),
        Buffer.from("0\r\n\r\n"),
      ]);
      expectBytes(got, want);
    });
  }

  for (const s of ["204 No Content", "304 Not Modified"]) {
    it(`writes no body for ${s}, whatever the handler writes`, async () => {
      const code = s.slice(0, 3);
      const got = await exchange(port, get(`/status?s=${code}&size=8192`));
      expectBytes(got, Buffer.from(head(s, "content-length: 8192\r\n"), "latin1"));
    });
  }

  it("writes no body for HEAD (a body of 8 KiB given whole, and one chunked)", async () => {
    const got = await exchange(
      port,
      get("/cl-end?size=8192", false, "HEAD") + get("/chunked?sizes=8192,5", true, "HEAD"),
    );
    const want = head("200 OK", "content-length: 8192\r\n", false) + head("200 OK", "");
    expectBytes(got, Buffer.from(want, "latin1"));
  });

  it("answers pipelined requests in order, inline and large bodies and chunks mixed", async () => {
    const reqs = [
      get("/cl-end?size=8192", false),
      get("/chunked?sizes=8193,1", false),
      get("/cl-end?size=8193", false),
      get("/text-chunked", false),
      get("/cl-end?size=1"),
    ];
    const got = await exchange(port, reqs.join(""));
    const text = Buffer.from(TEXT, "utf8");
    const ch = (s: boolean): Buffer =>
      Buffer.from(head("200 OK", "transfer-encoding: chunked\r\n", s), "latin1");
    const want = Buffer.concat([
      Buffer.from(head("200 OK", "content-length: 8192\r\n", false), "latin1"),
      awkward(8192),
      ch(false),
      chunk(piece(0, 8193)),
      chunk(piece(1, 1)),
      Buffer.from("0\r\n\r\n"),
      Buffer.from(head("200 OK", "content-length: 8193\r\n", false), "latin1"),
      awkward(8193),
      ch(false),
      chunk(text),
      chunk(text),
      Buffer.from("0\r\n\r\n"),
      Buffer.from(head("200 OK", "content-length: 1\r\n"), "latin1"),
      awkward(1),
    ]);
    expectBytes(got, want);
  });

  for (const length of [false, true])
    for (const size of [8192, 8193]) {
      it(`says false to write()s of ${size} bytes${length ? " with a length" : " chunked"} a client does not read, then 'drain', every byte through`, async () => {
        const count = 2000; // 16 MiB: far past what the socket's buffers hold
        const parts: Buffer[] = [];
        let got = 0;
        const s = net.connect(port, "127.0.0.1", () =>
          s.write(get(`/stream?size=${size}&count=${count}${length ? "&length=1" : ""}`)),
        );
        s.pause();
        await new Promise((r) => setTimeout(r, 300));
        // Held back: the server stopped at the socket's high-water mark, not the whole answer.
        expect(streamed.beforeFalse).to.be.greaterThan(0);
        expect(streamed.beforeFalse).to.be.lessThan(4 * 1024 * 1024);
        expect(streamed.drains).to.equal(0);
        await new Promise<void>((resolve, reject) => {
          s.on("data", (d: Buffer) => {
            parts.push(d);
            got += d.length;
          });
          s.on("error", reject);
          s.on("close", () => resolve());
          s.resume();
        });
        expect(streamed.drains).to.be.greaterThan(0);
        const body = Array.from({ length: count }, (_, i) =>
          length ? piece(i % 256, size) : chunk(piece(i % 256, size)),
        );
        const want = Buffer.concat([
          Buffer.from(
            head(
              "200 OK",
              length ? `content-length: ${size * count}\r\n` : "transfer-encoding: chunked\r\n",
            ),
            "latin1",
          ),
          ...body,
          Buffer.from(length ? "" : "0\r\n\r\n"),
        ]);
        expect(got).to.equal(want.length);
        expectBytes(Buffer.concat(parts), want);
      });
    }
});
