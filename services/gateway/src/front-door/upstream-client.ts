import { createRequire } from "node:module";
import net from "node:net";

/**
 * The proxy's keep-alive HTTP/1.1 client for bodiless requests (GET/HEAD/OPTIONS): a request is
 * one socket write of a head built in one string, and the response is parsed by Node's own
 * llhttp binding (the parser Node's http client uses), strict: Content-Length and chunked framing,
 * a response with both refused, and anything the instance sends when no request is outstanding
 * ends the connection. A connection is reused only after a complete response that allows it, and
 * never after an error or abort. No timer per request: one shared tick checks timeouts.
 *
 * It costs a fraction of undici's dispatcher per request (the proxy's largest cost after Node's
 * own server). The handler interface is undici's (onConnect, onHeaders, onData, onComplete,
 * onError) and errors carry undici's codes, so proxy.ts treats both alike; requests with a body
 * still go through undici (pools.ts), which streams and checks it.
 */
export interface UpstreamHandler {
  onConnect(abort: (err?: Error) => void): void;
  onHeaders(status: number, raw: string[], resume: () => void): boolean;
  onData(chunk: Buffer): boolean;
  onComplete(trailers: null): void;
  onError(err: Error): void;
}

export interface UpstreamRequest {
  method: string;
  /** Path and query. */
  path: string;
  /** Flat [name, value, ...]. */
  headers: readonly string[];
  /**
   * The function's timeout to the response head, exact (UND_ERR_HEADERS_TIMEOUT at that time,
   * counted from dispatch); 0: none. A timer is armed only for a request still waiting within two
   * ticks of it, so the usual fast answer never creates one.
   */
  answerTimeout?: number;
  /** Coarse backstop to the response head; 0: none. */
  headersTimeout: number;
  /** Longest quiet time within the response body; 0: none. */
  bodyTimeout: number;
}

interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
  [k: number]: unknown;
}
interface ParserClass {
  new (): Parser;
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kLenientNone: number;
}
/**
 * Node's llhttp binding, as its http client uses it (no public export; `_http_common` is
 * deprecated in documentation only). A Node without it, or with another shape, leaves every
 * request on undici (`upstreamClientAvailable`) instead of failing at start.
 */
const HTTPParser = ((): ParserClass | undefined => {
  try {
    const P = (createRequire(import.meta.url)("_http_common") as { HTTPParser?: ParserClass })
      .HTTPParser;
    const keys = [
      P?.RESPONSE,
      P?.kOnMessageBegin,
      P?.kOnHeaders,
      P?.kOnHeadersComplete,
      P?.kOnBody,
      P?.kOnMessageComplete,
      P?.kLenientNone,
    ];
    return typeof P === "function" && keys.every((k) => typeof k === "number") ? P : undefined;
  } catch {
    return undefined;
  }
})();

/** False on a Node whose parser binding this client cannot use: proxy.ts then uses undici. */
export const upstreamClientAvailable = HTTPParser !== undefined;

const CONNECT_TIMEOUT_MS = 3000;
const KEEP_ALIVE_MS = 4000;
const TICK_MS = 100;
/** The path and header checks undici makes, so a request it refuses is refused here too. */
const INVALID_PATH = /[^\u0021-\u00ff]/;
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function coded(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** A coarse clock for timeouts and idle sockets, advanced by the one shared tick. */
let now = Date.now();
let tick: NodeJS.Timeout | undefined;
const clients = new Map<string, UpstreamClient>();

function onTick(): void {
  now = Date.now();
  for (const [address, c] of clients) if (c.sweep()) clients.delete(address);
  if (clients.size === 0 && tick !== undefined) {
    clearInterval(tick);
    tick = undefined;
  }
}

/** The client for an instance address (`http://host:port`). */
export function upstreamClient(address: string): UpstreamClient {
  let c = clients.get(address);
  if (c === undefined) {
    c = new UpstreamClient(new URL(address));
    clients.set(address, c);
    if (tick === undefined) {
      now = Date.now();
      tick = setInterval(onTick, TICK_MS);
      tick.unref();
    }
  }
  return c;
}

/** Closes every connection (the gateway's shutdown, tests). */
export function closeUpstreamClients(): void {
  for (const c of clients.values()) c.close();
  clients.clear();
}

export class UpstreamClient {
  readonly host: string;
  readonly port: number;
  readonly hostHeader: string;
  readonly idle: Connection[] = [];
  readonly busy = new Set<Connection>();

  constructor(url: URL) {
    this.host = url.hostname.replace(/^\[|\]$/g, "");
    this.port = Number(url.port || 80);
    this.hostHeader = url.host;
  }

  dispatch(req: UpstreamRequest, handler: UpstreamHandler): void {
    const head = this.head(req, handler);
    if (head === undefined) return;
    const conn = this.idle.pop() ?? new Connection(this);
    this.busy.add(conn);
    conn.send(head, req, handler);
  }

  private head(req: UpstreamRequest, handler: UpstreamHandler): string | undefined {
    if (INVALID_PATH.test(req.path)) {
      handler.onError(coded("invalid request path", "UND_ERR_INVALID_ARG"));
      return undefined;
    }
    let head = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${this.hostHeader}\r\nconnection: keep-alive\r\n`;
    const h = req.headers;
    for (let i = 0; i + 1 < h.length; i += 2) {
      const name = h[i] as string;
      const value = h[i + 1] as string;
      if (!TOKEN.test(name) || INVALID_VALUE.test(value)) {
        handler.onError(coded(`invalid ${name} header`, "UND_ERR_INVALID_ARG"));
        return undefined;
      }
      head += `${name}: ${value}\r\n`;
    }
    return head + "\r\n";
  }

  released(conn: Connection, reusable: boolean): void {
    this.busy.delete(conn);
    if (reusable) this.idle.push(conn);
    else conn.destroy();
  }

  gone(conn: Connection): void {
    this.busy.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
  }

  /** Timeouts of busy connections, idle ones past their keep-alive; true when nothing is left. */
  sweep(): boolean {
    for (const c of this.busy) c.checkTimeouts();
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const c = this.idle[i] as Connection;
      if (now - c.idleSince > c.keepAliveMs) c.destroy();
    }
    return this.idle.length === 0 && this.busy.size === 0;
  }

  close(): void {
    for (const c of [...this.idle, ...this.busy]) c.destroy();
  }
}

const WAITING = 0; // for the response head
const BODY = 1;
const IDLE = 2;

class Connection {
  private readonly socket: net.Socket;
  private readonly parser: Parser;
  private handler: UpstreamHandler | undefined;
  private connected = false;
  private pendingHead: string | undefined;
  private state = IDLE;
  private isHead = false;
  private final = false;
  private keepAlive = false;
  private sentAt = 0;
  private lastData = 0;
  private headersTimeout = 0;
  private bodyTimeout = 0;
  private partialHeaders: string[] | undefined;
  private dead = false;
  private hinted = false;
  private answerTimeout = 0;
  private answerFrom = 0;
  private answerTimer: NodeJS.Timeout | undefined;
  /** Paused for a slow client: the body timeout waits (as undici's), restarting on resume. */
  private paused = false;
  idleSince = 0;
  keepAliveMs = KEEP_ALIVE_MS;
  readonly resume = (): void => {
    if (this.paused) {
      this.paused = false;
      this.lastData = now;
    }
    this.socket.resume();
  };

  constructor(private readonly client: UpstreamClient) {
    const socket = net.connect({ host: client.host, port: client.port, noDelay: true });
    this.socket = socket;
    const timer = setTimeout(() => {
      this.fail(coded("connect timeout", "UND_ERR_CONNECT_TIMEOUT"));
    }, CONNECT_TIMEOUT_MS);
    socket.once("connect", () => {
      clearTimeout(timer);
      this.connected = true;
      const head = this.pendingHead;
      this.pendingHead = undefined;
      if (head !== undefined) this.write(head);
    });
    socket.on("data", (d: Buffer) => this.onSocketData(d));
    socket.on("end", () => this.onSocketEnd());
    socket.on("error", (err) => {
      clearTimeout(timer);
      this.fail(err);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      this.fail(coded("other side closed", "UND_ERR_SOCKET"));
    });
    // Only reached when upstreamClientAvailable (proxy.ts checks it).
    const P = HTTPParser!;
    const p = new P();
    p.initialize(P.RESPONSE, {}, 0, P.kLenientNone);
    p[P.kOnMessageBegin] = () => this.onMessageBegin();
    p[P.kOnHeaders] = (headers: string[]) => {
      (this.partialHeaders ??= []).push(...headers);
    };
    p[P.kOnHeadersComplete] = (
      _maj: number,
      _min: number,
      headers: string[] | undefined,
      _method: unknown,
      _url: unknown,
      status: number,
      _text: string,
      upgrade: boolean,
      keepAlive: boolean,
    ) => this.onHeadersComplete(headers, status, upgrade, keepAlive);
    p[P.kOnBody] = (b: Buffer) => this.onBody(b);
    p[P.kOnMessageComplete] = () => this.onMessageComplete();
    this.parser = p;
  }

  send(head: string, req: UpstreamRequest, handler: UpstreamHandler): void {
    this.handler = handler;
    this.state = WAITING;
    this.isHead = req.method === "HEAD";
    this.final = false;
    this.headersTimeout = req.headersTimeout;
    this.bodyTimeout = req.bodyTimeout;
    this.sentAt = now;
    this.answerTimeout = req.answerTimeout ?? 0;
    if (this.answerTimeout > 0) {
      this.answerFrom = Date.now();
      // Too short for the tick to arm it in time.
      if (this.answerTimeout <= 2 * TICK_MS)
        this.answerTimer = setTimeout(this.onAnswerTimeout, this.answerTimeout);
    }
    if (this.dead) {
      this.fail(coded("other side closed", "UND_ERR_SOCKET"));
      return;
    }
    if (this.connected) {
      this.socket.ref();
      this.write(head);
    } else {
      this.pendingHead = head;
    }
  }

  private write(head: string): void {
    // As undici: the handler learns the request is about to be written (from here on the
    // function may have run) and gets the means to abort it, this request only: a handler that
    // calls it late must not cut a later request on the same connection.
    const handler = this.handler;
    if (handler === undefined) return;
    handler.onConnect((err?: Error) => {
      if (this.handler === handler) this.fail(err ?? coded("aborted", "UND_ERR_ABORTED"));
    });
    if (this.handler !== handler || this.dead) return;
    this.socket.write(head, "latin1");
  }

  private onSocketData(d: Buffer): void {
    if (this.handler === undefined) {
      // Nothing was asked: an idle connection that talks is not reused.
      this.destroy();
      return;
    }
    const r = this.parser.execute(d);
    if (r instanceof Error) this.fail(r);
  }

  private onSocketEnd(): void {
    if (this.handler !== undefined) {
      // A response framed by the connection's end completes here; any other is cut short.
      const r = this.parser.finish();
      if (r instanceof Error) this.fail(coded("other side closed", "UND_ERR_SOCKET"));
    }
    this.fail(coded("other side closed", "UND_ERR_SOCKET"));
  }

  private onMessageBegin(): void {
    if (this.handler === undefined || this.state !== WAITING)
      this.fail(coded("response without a request", "UND_ERR_SOCKET"));
  }

  private onHeadersComplete(
    headers: string[] | undefined,
    status: number,
    upgrade: boolean,
    keepAlive: boolean,
  ): number {
    let raw = headers ?? [];
    if (this.partialHeaders !== undefined) {
      raw = headers ? this.partialHeaders.concat(headers) : this.partialHeaders;
      this.partialHeaders = undefined;
    }
    const handler = this.handler;
    if (handler === undefined) return 1;
    if (upgrade || status === 101) {
      this.fail(coded("bad upgrade", "UND_ERR_SOCKET"));
      return 1;
    }
    if (status < 200) return 1; // 1xx: the final answer follows
    this.final = true;
    this.clearAnswerTimer();
    this.state = BODY;
    this.lastData = now;
    this.keepAlive = keepAlive;
    // The instance's keep-alive hint does not change: read from its first answer only.
    if (keepAlive && !this.hinted) {
      this.hinted = true;
      this.keepAliveMs = keepAliveHint(raw);
    }
    if (!handler.onHeaders(status, raw, this.resume)) this.pause();
    return this.isHead ? 1 : 0;
  }

  private onBody(b: Buffer): void {
    this.lastData = now;
    const handler = this.handler;
    if (handler !== undefined && !handler.onData(b)) this.pause();
  }

  private pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  private onMessageComplete(): void {
    // Trailers (the parser flushes them here): not passed on, and never taken for the next
    // response's headers on this connection.
    this.partialHeaders = undefined;
    if (!this.final) return; // the end of a 1xx
    const handler = this.handler;
    if (handler === undefined) return;
    this.handler = undefined;
    this.state = IDLE;
    this.idleSince = now;
    const reusable = this.keepAlive && !this.dead;
    if (reusable) {
      this.paused = false;
      this.socket.resume();
      this.socket.unref();
    }
    this.client.released(this, reusable);
    handler.onComplete(null);
  }

  checkTimeouts(): void {
    if (this.handler === undefined) return;
    if (this.state === WAITING && this.answerTimeout > 0 && this.answerTimer === undefined) {
      const left = this.answerFrom + this.answerTimeout - Date.now();
      if (left <= 2 * TICK_MS)
        this.answerTimer = setTimeout(this.onAnswerTimeout, Math.max(0, left));
    }
    if (
      this.state === WAITING &&
      this.headersTimeout > 0 &&
      now - this.sentAt > this.headersTimeout
    )
      this.fail(coded("Headers Timeout Error", "UND_ERR_HEADERS_TIMEOUT"));
    else if (
      this.state === BODY &&
      this.bodyTimeout > 0 &&
      !this.paused &&
      now - this.lastData > this.bodyTimeout
    )
      this.fail(coded("Body Timeout Error", "UND_ERR_BODY_TIMEOUT"));
  }

  private readonly onAnswerTimeout = (): void => {
    this.answerTimer = undefined;
    if (this.handler !== undefined && this.state === WAITING)
      this.fail(coded("the function did not answer in time", "UND_ERR_HEADERS_TIMEOUT"));
  };

  private clearAnswerTimer(): void {
    if (this.answerTimer !== undefined) clearTimeout(this.answerTimer);
    this.answerTimer = undefined;
  }

  /** Ends the connection; the request on it, if any, fails with `err`. */
  private fail(err: Error): void {
    this.clearAnswerTimer();
    const handler = this.handler;
    this.handler = undefined;
    this.destroy();
    handler?.onError(err);
  }

  destroy(): void {
    if (!this.dead) {
      this.dead = true;
      this.client.gone(this);
      this.socket.destroy();
      // Not now: this may run inside the parser's own callback (as Node's client does).
      setImmediate(closeParser, this.parser);
    }
  }
}

function closeParser(p: Parser): void {
  p.close();
}

/** How long an idle connection is kept: the instance's `Keep-Alive: timeout=N` less a second. */
function keepAliveHint(raw: readonly string[]): number {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length !== 10 || name.toLowerCase() !== "keep-alive") continue;
    const m = /timeout=(\d+)/i.exec(raw[i + 1] as string);
    if (m) return Math.min(KEEP_ALIVE_MS, Math.max(0, Number(m[1]) * 1000 - 1000));
  }
  return KEEP_ALIVE_MS;
}
