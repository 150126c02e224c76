import { EventEmitter } from "node:events";
import { STATUS_CODES, type ServerResponse } from "node:http";
import { FizzError } from "@fizz/events";
import { sendError } from "./http-errors";

/** What a response asks of the connection it answers on (own-connection.ts). */
export interface ResponseSink {
  /**
   * Writes bytes for this response, `data` then `more` then `tail` in one go; false when the
   * socket's buffer is full ('drain' follows).
   */
  write(data: string | Buffer, more?: Buffer, tail?: string): boolean;
  /** The response was written whole; `keepAlive`: the connection may carry another request. */
  finished(keepAlive: boolean): void;
  /** Cuts the connection (a response that cannot be completed). */
  destroy(): void;
  /** `Date` (unless the handler gave one) and `Connection`/`Keep-Alive` as the server adds them. */
  commonHeaders(keepAlive: boolean, date: boolean): string;
}

type Headers = readonly (string | Buffer)[] | Record<string, string | number | readonly string[]>;

const CRLF = "\r\n";
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** As node's ServerResponse (checkInvalidHeaderChar): controls but HTAB, DEL, beyond latin1. */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const LAST_CHUNK = "0\r\n\r\n";

/**
 * A response of the own front end with the members of http.ServerResponse the gateway's handlers
 * use (proxy.ts, proxy-answer.ts, http-errors.ts, response-head.ts, async-http.ts, ops):
 * `writeHead` (a flat list or an object), `flushHeaders`, `write` (false under backpressure, then
 * 'drain'), `end`, `destroy`, `headersSent`, `destroyed`, `writableFinished`, `statusCode`, and
 * the events 'finish' and 'close' (once: after the answer, or when the client goes first).
 *
 * Framing: the handler's Content-Length when it gives one, else chunked (HTTP/1.1) or the
 * connection's close (HTTP/1.0); none for HEAD, 1xx, 204 and 304. The head goes out with the
 * first body bytes (one write), or alone on flushHeaders.
 */
export class OwnResponse extends EventEmitter {
  statusCode = 200;
  headersSent = false;
  destroyed = false;
  writableFinished = false;
  private head: string | undefined;
  private chunked = false;
  private bodyless: boolean;
  private closed = false;

  constructor(
    private readonly sink: ResponseSink,
    private readonly isHead: boolean,
    /** The request allows keep-alive (HTTP/1.1 without close, HTTP/1.0 with keep-alive). */
    private keepAlive: boolean,
    private readonly http10: boolean,
  ) {
    super();
    this.bodyless = isHead;
  }

  writeHead(status: number, headers?: Headers): this {
    if (this.headersSent) throw new Error("writeHead: the head was already written");
    this.statusCode = status;
    let h = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "unknown"}\r\n`;
    let length = false;
    let hasDate = false;
    const add = (name: string, value: string): void => {
      if (INVALID_VALUE.test(value) || !TOKEN.test(name))
        throw new Error(`writeHead: invalid header ${JSON.stringify(name)}`);
      switch (name.length) {
        case 4:
          if (name.toLowerCase() === "date") hasDate = true;
          break;
        case 10:
          if (name.toLowerCase() === "connection") {
            if (/\bclose\b/i.test(value)) this.keepAlive = false;
            return; // the server writes its own
          }
          if (name.toLowerCase() === "keep-alive") return;
          break;
        case 14:
          if (name.toLowerCase() === "content-length") length = true;
          break;
        case 17:
          if (name.toLowerCase() === "transfer-encoding") return; // framing is the server's
          break;
      }
      h += `${name}: ${value}\r\n`;
    };
    if (Array.isArray(headers)) {
      for (let i = 0; i + 1 < headers.length; i += 2)
        add(String(headers[i]), String(headers[i + 1]));
    } else if (headers !== undefined) {
      const obj = headers as Record<string, string | number | readonly string[] | undefined>;
      for (const k of Object.keys(obj)) {
        const v = obj[k];
        if (typeof v === "string" || typeof v === "number") add(k, String(v));
        else if (v !== undefined) for (const x of v) add(k, x);
      }
    }
    if (status < 200 || status === 204 || status === 304) this.bodyless = true;
    else if (!length && !this.bodyless) {
      if (this.http10) this.keepAlive = false;
      else {
        this.chunked = true;
        h += "transfer-encoding: chunked\r\n";
      }
    }
    h += this.sink.commonHeaders(this.keepAlive, !hasDate);
    this.head = h + CRLF;
    this.headersSent = true;
    return this;
  }

  /** Bytes of this answer went out: it can no longer be replaced by another. */
  get started(): boolean {
    return this.headersSent && this.head === undefined;
  }

  flushHeaders(): void {
    if (!this.headersSent) this.writeHead(this.statusCode);
    const head = this.head;
    if (head === undefined || this.destroyed) return;
    this.head = undefined;
    this.sink.write(head);
  }

  write(chunk: Uint8Array | string): boolean {
    if (this.writableFinished) throw new Error("write after end");
    if (!this.headersSent) this.writeHead(this.statusCode);
    if (this.destroyed) return false;
    const data = bytesOf(chunk);
    if (this.bodyless || data.length === 0) {
      if (this.head !== undefined) this.flushHeaders();
      return true;
    }
    return this.send(data, false);
  }

  end(chunk?: Uint8Array | string): this {
    if (this.writableFinished || this.destroyed) return this;
    if (!this.headersSent) {
      // As ServerResponse: a body given whole with no head gets its length.
      const n = chunk === undefined ? 0 : Buffer.byteLength(chunk);
      this.writeHead(this.statusCode, ["content-length", String(n)]);
    }
    const data = chunk === undefined ? undefined : bytesOf(chunk);
    if (data !== undefined && data.length > 0 && !this.bodyless) this.send(data, true);
    else if (this.chunked) this.sink.write(this.takeHead() + LAST_CHUNK);
    else if (this.head !== undefined) this.sink.write(this.takeHead());
    this.writableFinished = true;
    this.emit("finish");
    this.sink.finished(this.keepAlive);
    this.emitClose();
    return this;
  }

  /** Cuts the connection; a response not yet finished is lost (the client sees it cut). */
  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      if (!this.writableFinished) this.sink.destroy();
    }
    return this;
  }

  /** The connection closed: 'close' for a response not yet finished. */
  connectionClosed(): void {
    this.destroyed = true;
    this.emitClose();
  }

  private emitClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.emit("close");
  }

  private takeHead(): string {
    const head = this.head ?? "";
    this.head = undefined;
    return head;
  }

  private send(data: Buffer, last: boolean): boolean {
    if (!this.chunked) {
      if (this.head === undefined) return this.sink.write(data);
      return this.sink.write(this.takeHead(), data);
    }
    // The chunk's size line, its bytes and its end in one write (one syscall per chunk).
    return this.sink.write(
      `${this.takeHead()}${data.length.toString(16)}\r\n`,
      data,
      last ? `\r\n${LAST_CHUNK}` : CRLF,
    );
  }
}

/**
 * A body piece as a Buffer, as ServerResponse takes it: a string as UTF-8, a Uint8Array viewed as
 * a Buffer (not copied). The connection writes a small body inside its head's string as the latin1
 * of its bytes, which only a Buffer gives: a Uint8Array's toString() is its numbers joined by
 * commas, more bytes than its length, so the framing would be off and the client read the rest as
 * a next answer.
 */
function bytesOf(chunk: Uint8Array | string): Buffer {
  if (typeof chunk === "string") return Buffer.from(chunk);
  return Buffer.isBuffer(chunk)
    ? chunk
    : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/**
 * The answer to a request the own front end refuses (each the last on its connection): an Upgrade
 * or CONNECT, HTTP/1.1 without Host, an Expect other than 100-continue. Undefined: none of these.
 */
export function refusalOf(
  upgrade: boolean,
  noHost: boolean,
  badExpect: boolean,
): ((req: unknown, res: OwnResponse) => void) | undefined {
  if (upgrade) return (_req, res) => refuseUpgrade(res);
  if (noHost) return (_req, res) => refuseNoHost(res);
  if (badExpect) return (_req, res) => refuseExpectation(res);
  return undefined;
}

/** The own front end takes no protocol upgrade (WebSocket) nor CONNECT: refused, and closed. */
function refuseUpgrade(res: OwnResponse): void {
  const err = new FizzError(
    "VALIDATION_FAILED",
    "upgrade: the gateway takes no protocol upgrade or CONNECT",
    { field: "upgrade" },
  );
  sendError(res as unknown as ServerResponse, err, undefined, true);
}

/** An Expect other than 100-continue (RFC 9110 §10.1.1). */
function refuseExpectation(res: OwnResponse): void {
  res.writeHead(417, ["content-length", "0"]).end();
}

/** HTTP/1.1 without Host (RFC 9112 §3.2), refused as node's server does (requireHostHeader). */
function refuseNoHost(res: OwnResponse): void {
  res.writeHead(400, ["content-length", "0"]).end();
}
