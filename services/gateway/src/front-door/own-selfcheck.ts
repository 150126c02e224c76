import { createHash } from "node:crypto";
import type http from "node:http";
import net, { type AddressInfo } from "node:net";
import {
  closeParser,
  requestParser,
  type RequestEvents,
  type RequestHead,
  type RequestParser,
} from "./own-parser";
import { listenOwn } from "./own-server";

/**
 * The own front end (FIZZ_GATEWAY_FRONTEND=own) leans on Node internals that `ownFrontendAvailable`
 * checks only the shape of: `_http_common`'s HTTPParser and its kOn* callback slots, `consume` of
 * a socket's handle, and the handle's readStart/readStop. A Node whose internals keep their shape
 * but change their meaning would mis-parse or mix up requests silently; this runs a canned
 * exchange through that path on a loopback port at start, so such a Node falls back to node's
 * http server with a warning instead.
 */
export type ParserFactory = (socket: net.Socket, ev: RequestEvents) => RequestParser;

export interface SelfCheckOptions {
  /** The parser under check (own-parser.ts); a test passes a broken one. */
  parser?: ParserFactory;
  /** The own server under check (own-server.ts). */
  listen?: typeof listenOwn;
  /** Past this the check fails (a parser that never calls back must not hold the start). */
  timeoutMs?: number;
}

export type SelfCheckResult = { ok: true; ms: number } | { ok: false; failed: string; ms: number };

interface Seen {
  method: string;
  url: string;
  raw: string[];
  version: string;
  keepAlive: boolean;
  upgrade: boolean;
  body: string;
}

const MANY = Array.from({ length: 40 }, (_, i) => [`X-Many-${i}`, String(i)]).flat();
const HEAD_A = `GET /a?x=1&y=%20 HTTP/1.1\r\nHost: x\r\n${pairs(MANY)}\r\n`;
const CHUNKED = "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
const HEAD_B =
  "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n";
const REQ_C = "PUT /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz";
/** An HTTP/1.1 keep-alive request as the parser must report it. */
const seen = (method: string, url: string, raw: string[], body: string): Seen => ({
  method,
  url,
  raw: ["Host", "x", ...raw],
  version: "1.1",
  keepAlive: true,
  upgrade: false,
  body,
});
const EXPECTED: Seen[] = [
  seen("GET", "/a?x=1&y=%20", MANY, ""),
  seen("POST", "/b", ["Transfer-Encoding", "chunked", "Content-Type", "text/plain"], "hello world"),
  seen("PUT", "/c", ["Content-Length", "3"], "xyz"),
];

function pairs(flat: readonly string[]): string {
  let s = "";
  for (let i = 0; i + 1 < flat.length; i += 2) s += `${flat[i]}: ${flat[i + 1]}\r\n`;
  return s;
}

function fail(what: string): never {
  throw new Error(what);
}

function same(step: string, got: unknown, want: unknown): void {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) fail(`${step}: got ${g.slice(0, 200)}, want ${w.slice(0, 200)}`);
}

/** Reads a socket until `done` says what arrived is complete (or the socket closes). */
function readUntil(
  socket: net.Socket,
  done: (all: string, closed: boolean) => boolean,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let all = "";
    const onData = (d: Buffer): void => {
      all += d.toString("latin1");
      if (done(all, false)) {
        socket.off("data", onData);
        socket.off("close", onClose);
        resolve(all);
      }
    };
    const onClose = (): void =>
      done(all, true)
        ? resolve(all)
        : reject(new Error(`closed after ${JSON.stringify(all.slice(0, 120))}`));
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.once("error", () => undefined);
  });
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

function connect(port: number, cleanup: (() => void)[]): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => resolve(s));
    s.once("error", reject);
    cleanup.push(() => s.destroy());
  });
}

/**
 * The parser alone: a pipelined pair in one segment (a head of 41 fields, which llhttp hands over
 * in parts, then a chunked body with a trailer), then, while reading is stopped, a third request
 * that must not be parsed until reading is started again.
 */
async function parserExchange(factory: ParserFactory, cleanup: (() => void)[]): Promise<void> {
  const seen: Seen[] = [];
  let gate: RequestParser | undefined;
  let stopped!: () => void;
  const isStopped = new Promise<void>((r) => (stopped = r));
  // What goes wrong on the server side is raised here, never thrown from a socket's callback
  // (an uncaught exception at start is what this check is there to avoid).
  let broken!: (err: Error) => void;
  const serverFailed = new Promise<never>((_, reject) => (broken = reject));
  serverFailed.catch(() => undefined);
  const server = net.createServer((socket) => {
    socket.on("error", () => undefined);
    let cur: Seen | undefined;
    const ev: RequestEvents = {
      onMessageBegin: () => undefined,
      onHead: (h: RequestHead) => {
        cur = {
          method: h.method,
          url: h.url,
          raw: h.raw,
          version: `${h.major}.${h.minor}`,
          keepAlive: h.keepAlive,
          upgrade: h.upgrade,
          body: "",
        };
      },
      onBody: (b) => {
        if (cur !== undefined) cur.body += b.toString("latin1");
      },
      onMessageComplete: () => {
        if (cur === undefined)
          return broken(new Error("parser: a message completed without a head"));
        seen.push(cur);
        const n = seen.length;
        socket.write(`answer ${n} ${createHash("sha1").update(cur.body).digest("hex")}\n`);
        cur = undefined;
        if (n === 2) {
          gate?.read(false);
          stopped();
        }
      },
      onParseError: (err) => broken(new Error(`parser: ${err.message}`)),
      onReadEnd: () => undefined,
    };
    try {
      gate = factory(socket, ev);
    } catch (err) {
      broken(err instanceof Error ? err : new Error(String(err)));
      socket.destroy();
      return;
    }
    socket.on("close", () =>
      setImmediate(() => {
        try {
          if (gate !== undefined) closeParser(gate.parser);
        } catch {
          // a parser that cannot be freed: the check has failed or fails elsewhere
        }
      }),
    );
  });
  cleanup.push(() => server.close());
  const port = await listen(server);
  const c = await connect(port, cleanup);
  const lines = (n: number) => (all: string) => all.split("\n").length > n;
  const first = readUntil(c, lines(2));
  c.write(HEAD_A + HEAD_B + CHUNKED);
  await Promise.race([first, serverFailed]);
  await Promise.race([isStopped, serverFailed]);
  const third = readUntil(c, lines(1));
  c.write(REQ_C);
  // The third request is in the socket's buffer by now; with reading stopped it stays unread.
  await new Promise((r) => setTimeout(r, 5));
  if (seen.length !== 2) fail(`parser: read stopped, yet ${seen.length} requests were parsed`);
  gate?.read(true);
  const answer = await Promise.race([third, serverFailed]);
  same("parser: requests", seen.length, EXPECTED.length);
  EXPECTED.forEach((want, i) => {
    for (const k of Object.keys(want) as (keyof Seen)[])
      same(`parser: request ${i + 1} ${k}`, seen[i]?.[k], want[k]);
  });
  same(
    "parser: third answer",
    answer,
    `answer 3 ${createHash("sha1").update("xyz").digest("hex")}\n`,
  );
}

/** The own server whole: a pipelined GET, chunked POST, HEAD and a closing GET, answered in order. */
async function serverExchange(listenFn: typeof listenOwn, cleanup: (() => void)[]): Promise<void> {
  const handler: http.RequestListener = (req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString("latin1")));
    req.on("end", () => {
      const text = `${req.method} ${req.url} ${String(req.headers["x-n"])} ${body}`;
      res.writeHead(200, { "content-type": "text/plain", "content-length": String(text.length) });
      res.end(text);
    });
  };
  const limits = {
    maxConnections: 8,
    headersTimeoutMs: 1000,
    requestTimeoutMs: 1000,
    keepAliveTimeoutMs: 1000,
  };
  const server = await listenFn(handler, "127.0.0.1", 0, { count: 0 }, limits, 1000);
  cleanup.push(() => void server.drain(0));
  const c = await connect(server.port, cleanup);
  const reply = readUntil(c, (_, closed) => closed);
  c.write(
    "GET /p1 HTTP/1.1\r\nHost: x\r\nX-N: 1\r\n\r\n" +
      "POST /p2 HTTP/1.1\r\nHost: x\r\nX-N: 2\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
      "HEAD /p3 HTTP/1.1\r\nHost: x\r\nX-N: 3\r\n\r\n" +
      "GET /p4 HTTP/1.1\r\nHost: x\r\nX-N: 4\r\nConnection: close\r\n\r\n",
  );
  const answers = splitAnswers(await reply);
  same("server: answers", answers, [
    "200 GET /p1 1 ",
    "200 POST /p2 2 abc",
    "200 ",
    "200 GET /p4 4 ",
  ]);
}

/** `<status> <body>` per answer; HEAD's (the third) has a length and no body. */
function splitAnswers(all: string): string[] {
  const out: string[] = [];
  let rest = all;
  while (rest.length > 0) {
    const end = rest.indexOf("\r\n\r\n");
    if (end < 0) fail(`server: a cut answer ${JSON.stringify(rest.slice(0, 120))}`);
    const head = rest.slice(0, end);
    const status =
      /^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1] ??
      fail(`server: no status in ${JSON.stringify(head.slice(0, 80))}`);
    const length =
      out.length === 2 ? 0 : Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
    if (Number.isNaN(length))
      fail(`server: no content-length in ${JSON.stringify(head.slice(0, 200))}`);
    out.push(`${status} ${rest.slice(end + 4, end + 4 + length)}`);
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

/** Runs both exchanges within `timeoutMs`; what failed is named, nothing is thrown. */
export async function ownSelfCheck(opts: SelfCheckOptions = {}): Promise<SelfCheckResult> {
  const started = performance.now();
  const timeoutMs = opts.timeoutMs ?? 1000;
  const cleanup: (() => void)[] = [];
  let step = "parser";
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      (async () => {
        await parserExchange(opts.parser ?? requestParser, cleanup);
        step = "server";
        await serverExchange(opts.listen ?? listenOwn, cleanup);
      })(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${step}: no outcome within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
    return { ok: true, ms: performance.now() - started };
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    return {
      ok: false,
      failed: msg.startsWith(step) ? msg : `${step}: ${msg}`,
      ms: performance.now() - started,
    };
  } finally {
    clearTimeout(timer);
    for (const f of cleanup) quietly(f);
    // A step still under way past the time limit goes on: what it opens from now (a listening
    // server, a socket) is closed at once rather than left open for the gateway's lifetime.
    cleanup.push = (...fs) => {
      for (const f of fs) quietly(f);
      return 0;
    };
  }
}

function quietly(f: () => void): void {
  try {
    f();
  } catch {
    // cleanup of a failed check: what it cleans may be half made
  }
}
