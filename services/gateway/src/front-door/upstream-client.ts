import { clock, Connection, TICK_MS, type ConnectionOwner } from "./upstream-connection";
import { coded } from "./upstream-parser";
import type { UpstreamHandler, UpstreamRequest } from "./upstream-types";

export { upstreamClientAvailable } from "./upstream-parser";
export type { UpstreamHandler, UpstreamRequest } from "./upstream-types";

/**
 * The proxy's keep-alive HTTP/1.1 client for bodiless requests and bodies of a known length: a
 * request is one socket write of a head built in one string (the body follows as it comes), and
 * the response is parsed by Node's own
 * llhttp binding (the parser Node's http client uses), strict: Content-Length and chunked framing,
 * a response with both refused, and anything the instance sends when no request is outstanding
 * ends the connection. A connection is reused only after a complete response that allows it, and
 * never after an error or abort. No timer per request: one shared tick checks timeouts.
 *
 * It costs a fraction of undici's dispatcher per request (the proxy's largest cost after Node's
 * own server). The handler interface is undici's (onConnect, onHeaders, onData, onComplete,
 * onError) and errors carry undici's codes, so proxy.ts treats both alike; chunked request bodies
 * and https instances still go through undici (pools.ts).
 */
/** The path and header checks undici makes, so a request it refuses is refused here too. */
const INVALID_PATH = /[^\u0021-\u00ff]/;
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const PAYLOAD_METHODS = new Set(["POST", "PUT", "PATCH"]);

/** Transfer-Encoding always, Content-Length when the client writes its own. */
function framing(name: string, withBody: boolean): boolean {
  const lower = name.toLowerCase();
  return lower === "transfer-encoding" || (withBody && lower === "content-length");
}

let tick: NodeJS.Timeout | undefined;
const clients = new Map<string, UpstreamClient>();

function onTick(): void {
  clock.now = Date.now();
  for (const [address, c] of clients) if (c.sweep()) clients.delete(address);
  if (clients.size === 0 && tick !== undefined) {
    clearInterval(tick);
    tick = undefined;
  }
}

export function upstreamClient(address: string): UpstreamClient {
  let c = clients.get(address);
  if (c === undefined) {
    c = new UpstreamClient(new URL(address));
    clients.set(address, c);
    if (tick === undefined) {
      clock.now = Date.now();
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

export class UpstreamClient implements ConnectionOwner {
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
    // No `connection: keep-alive`: HTTP/1.1 keeps the connection by default (every runtime's
    // server does), nginx sends none either, and each header is parsed and turned into a
    // headers-object entry by the instance on every call, in the process functions pay for.
    let head = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${this.hostHeader}\r\n`;
    const h = req.headers;
    // A body's length, or 0 for a bodiless POST/PUT/PATCH (as undici and Node's client send it:
    // some servers wait for a body without it); none for the rest.
    const body = req.body;
    const length =
      body === undefined
        ? PAYLOAD_METHODS.has(req.method)
          ? 0
          : -1
        : body instanceof Uint8Array
          ? body.length
          : (req.bodyLength ?? 0);
    const withBody = length >= 0;
    for (let i = 0; i + 1 < h.length; i += 2) {
      const name = h[i] as string;
      const value = h[i + 1] as string;
      if (!TOKEN.test(name) || INVALID_VALUE.test(value)) {
        handler.onError(coded(`invalid ${name} header`, "UND_ERR_INVALID_ARG"));
        return undefined;
      }
      // The body is framed here alone (below): a header that framed it otherwise
      // would let the instance read part of the body as a request of its own.
      if ((name.length === 14 || name.length === 17) && framing(name, withBody)) continue;
      head += `${name}: ${value}\r\n`;
    }
    if (withBody) head += `content-length: ${length}\r\n`;
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
      if (clock.now - c.idleSince > c.keepAliveMs) c.destroy();
    }
    return this.idle.length === 0 && this.busy.size === 0;
  }

  close(): void {
    for (const c of [...this.idle, ...this.busy]) c.destroy();
  }
}
