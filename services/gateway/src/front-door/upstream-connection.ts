import net from "node:net";
import type { UpstreamHandler, UpstreamRequest } from "./upstream-types";
import { BodySender } from "./upstream-body";
import { coded, HTTPParser, type Parser, type StreamHandle } from "./upstream-parser";

/**
 * One keep-alive connection of the upstream client (upstream-client.ts): one request at a time,
 * its response parsed strictly by llhttp reading the socket in C++, its timeouts checked by the
 * client's shared tick.
 */
const CONNECT_TIMEOUT_MS = 3000;
export const KEEP_ALIVE_MS = 4000;
export const TICK_MS = 100;

/** A coarse clock for timeouts and idle sockets, advanced by the client's one shared tick. */
export const clock = { now: Date.now() };

/** What a connection tells the client that holds it. */
export interface ConnectionOwner {
  readonly host: string;
  readonly port: number;
  released(conn: Connection, reusable: boolean): void;
  gone(conn: Connection): void;
}

const WAITING = 0; // for the response head
const BODY = 1;
const IDLE = 2;

export class Connection {
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
  /**
   * The socket's handle while the parser reads it in C++ (`consume`, as Node's http server reads
   * its clients): no JS 'data' event, stream push or Buffer per read. Undefined: the 'data' path.
   */
  private handle: StreamHandle | undefined;
  /** A message completed in the read being parsed: the bytes of that read were asked for. */
  private completedInRead = false;
  /** The request's body while it is being sent (upstream-types.ts, upstream-body.ts). */
  private sender: BodySender | undefined;
  /** A body given whole: written with the head. */
  private bytes: Uint8Array | undefined;
  idleSince = 0;
  keepAliveMs = KEEP_ALIVE_MS;
  readonly resume = (): void => {
    if (this.paused) {
      this.paused = false;
      this.lastData = clock.now;
    }
    this.readOn();
  };

  constructor(private readonly client: ConnectionOwner) {
    const socket = net.connect({ host: client.host, port: client.port, noDelay: true });
    this.socket = socket;
    const timer = setTimeout(() => {
      this.fail(coded("connect timeout", "UND_ERR_CONNECT_TIMEOUT"));
    }, CONNECT_TIMEOUT_MS);
    socket.once("connect", () => {
      clearTimeout(timer);
      this.connected = true;
      this.consume();
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
    p[P.kOnExecute] = (r: number | Error) => this.onExecuted(r);
    this.parser = p;
  }

  private consume(): void {
    const handle = (this.socket as unknown as { _handle?: StreamHandle | null })._handle;
    if (this.dead || handle?.isStreamBase !== true || typeof this.parser.consume !== "function")
      return;
    this.parser.consume(handle);
    this.handle = handle;
  }

  /** After the parser read the socket itself (consume): what onSocketData checks on the JS path. */
  private onExecuted(r: number | Error): void {
    const completed = this.completedInRead;
    this.completedInRead = false;
    if (r instanceof Error) this.fail(r);
    // Bytes read while nothing was asked (not the tail of a response just completed): an idle
    // connection that talks is not reused.
    else if (this.handler === undefined && !completed) this.destroy();
  }

  private readOn(): void {
    if (this.dead) return;
    if (this.handle !== undefined) this.handle.readStart();
    else this.socket.resume();
  }

  send(head: string, req: UpstreamRequest, handler: UpstreamHandler): void {
    this.handler = handler;
    this.state = WAITING;
    this.isHead = req.method === "HEAD";
    this.final = false;
    this.headersTimeout = req.headersTimeout;
    this.bodyTimeout = req.bodyTimeout;
    this.sentAt = clock.now;
    const body = req.body;
    this.bytes = body instanceof Uint8Array ? body : undefined;
    this.sender =
      body === undefined || body instanceof Uint8Array
        ? undefined
        : new BodySender(this.socket, body, req.bodyLength ?? 0, this.failBody);
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
    const sender = this.sender;
    if (sender === undefined) {
      const bytes = this.bytes;
      if (bytes === undefined || bytes.length === 0) {
        this.socket.write(head, "latin1");
        return;
      }
      this.bytes = undefined;
      this.socket.cork();
      this.socket.write(head, "latin1");
      this.socket.write(bytes);
      this.socket.uncork();
      return;
    }
    // Head and body in one write when the body is at hand (a small one usually came in the
    // client's read that carried its head): corked until its first chunk, or this turn's end.
    this.socket.cork();
    this.socket.write(head, "latin1");
    sender.start();
  }

  /** The body is no longer sent: it ended whole, or the request is over (`destroy`: stop its stream). */
  private stopBody(destroy: boolean): void {
    const sender = this.sender;
    if (sender === undefined) return;
    this.sender = undefined;
    sender.stop(destroy);
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
    this.lastData = clock.now;
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
    this.lastData = clock.now;
    const handler = this.handler;
    if (handler !== undefined && !handler.onData(b)) this.pause();
  }

  private pause(): void {
    this.paused = true;
    if (this.handle !== undefined) this.handle.readStop();
    else this.socket.pause();
  }

  private onMessageComplete(): void {
    // Trailers (the parser flushes them here): not passed on, and never taken for the next
    // response's headers on this connection.
    this.partialHeaders = undefined;
    if (!this.final) return; // the end of a 1xx
    const handler = this.handler;
    if (handler === undefined) return;
    this.handler = undefined;
    this.completedInRead = true;
    this.state = IDLE;
    this.idleSince = clock.now;
    // An answer before the body was sent whole (the instance refused it early): the rest is not
    // sent, and the connection, mid-request, is not reused. One whose every byte was written is,
    // though its stream may not have emitted 'end' yet.
    const bodyOwed = (this.sender?.owed ?? 0) > 0;
    this.stopBody(true);
    const reusable = this.keepAlive && !this.dead && !bodyOwed;
    if (reusable) {
      if (this.paused) {
        this.paused = false;
        this.readOn();
      }
      this.socket.unref();
    }
    this.client.released(this, reusable);
    // Invariant: onComplete must not dispatch on this address synchronously. The connection is
    // back in the pool while the rest of this read is still being parsed, so a request sent from
    // here would take bytes the instance sent after this response (a forged answer) as its own.
    // proxy.ts never does: the queue's hand-off is a promise and its retries avoid this instance
    // (upstream-client-reads.unit.test.ts).
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
      clock.now - this.sentAt > this.headersTimeout
    )
      this.fail(coded("Headers Timeout Error", "UND_ERR_HEADERS_TIMEOUT"));
    else if (
      this.state === BODY &&
      this.bodyTimeout > 0 &&
      !this.paused &&
      clock.now - this.lastData > this.bodyTimeout
    )
      this.fail(coded("Body Timeout Error", "UND_ERR_BODY_TIMEOUT"));
  }

  private readonly failBody = (err: Error): void => this.fail(err);

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
    this.stopBody(true);
    this.destroy();
    handler?.onError(err);
  }

  destroy(): void {
    if (!this.dead) {
      this.dead = true;
      this.client.gone(this);
      this.socket.destroy();
      // Not clock.now: this may run inside the parser's own callback (as Node's client does).
      setImmediate(closeParser, this.parser);
    }
  }
}

function closeParser(p: Parser): void {
  p.unconsume?.();
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
