import type http from "node:http";
import type net from "node:net";
import { OwnRequest, type RequestSource } from "./own-request";
import { OwnResponse, refusalOf, type ResponseSink } from "./own-response";
import { OwnSocket } from "./own-socket";
import {
  closeParser,
  headFacts,
  requestParser,
  type RequestEvents,
  type RequestHead,
  type RequestParser,
} from "./own-parser";

/** What a connection needs of the own server (own-server.ts). */
export interface ConnectionHost {
  readonly handler: http.RequestListener;
  readonly draining: boolean;
  commonHeaders(keepAlive: boolean, date: boolean): string;
  gone(conn: OwnConnection): void;
}

/** node's server's test of Expect (repeated values joined): 100-continue among others. */
const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i;
/** Bodies up to one socket read (libuv reads 64 KiB at most): see onHead. */
const WHOLE_BODY_MAX = 64 * 1024;

const NONE = 0; // between requests
const HEAD = 1; // a request head is being read
const BODY = 2; // its body

interface Exchange {
  req: OwnRequest;
  res: OwnResponse;
  /** No request is taken after this one (close, HTTP/1.0, upgrade, a refused expectation). */
  last: boolean;
  /** Answers it: the handler, or a refusal. */
  run: (req: OwnRequest, res: OwnResponse) => void;
}

/**
 * One client connection of the own front end: requests parsed by llhttp (strict) reading the
 * socket in C++ (`consume`, as node's http server), answered one at a time in order. A pipelined
 * request waits, its connection not read meanwhile, until the answer before it is written. Its
 * socket side (reading or not, writes, flush progress, ending) is own-socket.ts.
 */
export class OwnConnection extends OwnSocket implements RequestSource, ResponseSink, RequestEvents {
  private readonly reader: RequestParser;
  /** What is being parsed, and since when (the headers and request timeouts). */
  parsing = HEAD;
  parseStart: number;
  /** When the last answer ended (the keep-alive timeout), while nothing else is going on. */
  idleSince = 0;
  /** Accepted, and not a byte of a request yet. */
  private fresh = true;
  private reading: OwnRequest | undefined;
  private current: Exchange | undefined;
  private readonly queue: Exchange[] = [];
  /** A request whose small body may be in the same read: started when it is, or at the read's end. */
  private deferred: Exchange | undefined;
  /** An answered request whose body is still coming: read and dropped, then the next one. */
  private discarding: OwnRequest | undefined;

  constructor(
    socket: net.Socket,
    private readonly host: ConnectionHost,
  ) {
    super(socket);
    this.parseStart = Date.now();
    this.reader = requestParser(socket, this);
    socket.on("drain", () => this.current?.res.emit("drain"));
    socket.on("end", () => this.onEnd());
    socket.on("error", () => this.destroy());
    socket.on("close", () => this.onClose());
  }

  onMessageBegin(): void {
    this.fresh = false;
    this.parsing = HEAD;
    this.parseStart = Date.now();
  }

  onBody(chunk: Buffer): void {
    this.reading?.body(chunk);
  }

  onHead(head: RequestHead): void {
    this.parsing = BODY;
    // After a last request (a refused expectation): not taken.
    if (this.stopped) return;
    const { method, raw, major, minor } = head;
    const http10 = major === 1 && minor === 0;
    const http11 = major === 1 && minor === 1;
    // Expect is read on HTTP/1.1 only, as node's server: an HTTP/1.0 client's is ignored (RFC
    // 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be ignored).
    const facts = headFacts(raw);
    const { host, body } = facts;
    const expect = http11 ? facts.expect : undefined;
    const cont = expect !== undefined && CONTINUE.test(expect);
    const req = new OwnRequest(
      this,
      method,
      head.url,
      raw,
      `${major}.${minor}`,
      // Without a body there is nothing to continue to (its client must not have asked).
      cont && body ? () => this.continue(req) : undefined,
    );
    this.reading = req;
    const noHost = !host && http11;
    const badExpect = expect !== undefined && !cont;
    const refusal = refusalOf(head.upgrade, noHost, badExpect);
    const run = refusal ?? (this.host.handler as unknown as Exchange["run"]);
    // After a refused expectation its client may send the body or not: what follows is not
    // known to be a request, so the connection ends; without a body it goes on, as node's.
    const last = !head.keepAlive || (refusal !== undefined && (head.upgrade || noHost || body));
    if (last) this.stopped = true;
    const res = new OwnResponse(this, method === "HEAD", !last, http10);
    const ex: Exchange = { req, res, run, last };
    // In order: behind an answer going out or requests waiting (for the client to read).
    if (this.current === undefined && this.queue.length === 0) {
      // A small body nearly always comes in the read that carried its head: the handler starts
      // once the parser has it (onMessageComplete), or at the read's end if it is not all there,
      // so the proxy gets it whole and sends it with its head, with no stream (body.ts). Not
      // with Expect: 100-continue (its client waits for the handler before it sends a byte).
      if (refusal === undefined && !cont && facts.length > 0 && facts.length <= WHOLE_BODY_MAX)
        this.deferred = ex;
      else this.start(ex);
    } else {
      this.queue.push(ex);
      this.sync();
    }
  }

  onMessageComplete(): void {
    const req = this.reading;
    this.reading = undefined;
    this.parsing = NONE;
    req?.ended();
    // Its whole body is in: a pause for its reader (readLess) no longer holds the socket. Left
    // set, a body pushed past the request's buffer before its handler read it (a cold start's
    // wait) kept the connection unread after the answer, and the client's next request hung.
    if (this.bodyPaused) {
      this.bodyPaused = false;
      this.sync();
    }
    const ex = this.deferred;
    if (ex !== undefined && ex.req === req) {
      this.deferred = undefined;
      this.start(ex);
    }
    if (req !== undefined && req === this.discarding) {
      this.discarding = undefined;
      this.next();
    }
    if (req !== undefined && req === this.lingering) this.closeAfterLinger();
  }

  /** Everything this read brought is parsed: a request held for its body starts now (onHead). */
  onReadEnd(): void {
    const ex = this.deferred;
    if (ex === undefined) return;
    this.deferred = undefined;
    if (!this.dead) this.start(ex);
  }

  private start(ex: Exchange): void {
    this.current = ex;
    ex.run(ex.req, ex.res);
  }

  private continue(req: OwnRequest): void {
    if (this.current?.req === req && !this.current.res.headersSent && !this.dead)
      this.socket.write("HTTP/1.1 100 Continue\r\n\r\n", "latin1");
  }

  commonHeaders(keepAlive: boolean, date: boolean): string {
    return this.host.commonHeaders(keepAlive && !this.closing, date);
  }

  finished(keepAlive: boolean): void {
    const ex = this.current;
    this.current = undefined;
    if (this.dead || ex === undefined) return;
    const req = ex.req;
    if (!keepAlive || ex.last || this.host.draining || (!req.complete && req.continuePending)) {
      if (!req.complete && !req.continuePending && this.reading === req) this.linger(req);
      else this.endSoon();
      return;
    }
    if (!req.complete) {
      // Answered before its body was read (a 404): the rest is dropped (as node's), then on.
      this.discarding = req;
      req.discard();
      this.bodyPaused = false;
      this.sync();
      return;
    }
    this.next();
  }

  /** The answer before is written and its request read whole: the next request, if any. */
  private next(): void {
    if (this.queue.length > 0 && this.socket.writableNeedDrain) {
      // A client not reading its answers: the next waits for them to be taken (as node's server
      // at its high-water mark), or answers would pile up in the socket's buffer without bound.
      this.socket.once("drain", () => {
        if (!this.dead) this.next();
      });
      return;
    }
    const next = this.queue.shift();
    if (next !== undefined) {
      // A head or body cut where reading stopped for the queue: its timeout counts from now.
      if (this.queue.length === 0 && this.parsing !== NONE) this.parseStart = Date.now();
      // Not from within this answer's own stack (an upstream parser's callback, often); current
      // at once, so a head parsed meanwhile queues behind it.
      this.current = next;
      setImmediate(() => {
        if (!this.dead) this.start(next);
        this.sync();
      });
      return;
    }
    if (this.parsing === NONE) this.idleSince = Date.now();
    this.sync();
  }

  /** Reads on while the body is wanted and no request waits; not once the connection ends. */
  protected override sync(): void {
    if (this.dead) return;
    const on = !this.closing && !this.bodyPaused && this.queue.length === 0;
    this.reader.read(on || this.lingering !== undefined);
  }

  /**
   * Requests wait their turn (behind an answer, or for the client to read answers) and the
   * socket is not read meanwhile: a head or body cut where reading stopped stalls for the
   * server, not the client (no headers or request timeout then; node's server pauses its parser
   * there instead, leaving nothing half-read). A client that never reads is cut by the send
   * timeout (own-server.ts).
   */
  get held(): boolean {
    return this.queue.length > 0;
  }

  /**
   * Nothing in progress: no request being read or answered, and no answer still going out (a
   * slow reader taking a large answer is not idle: node's keep-alive timeout also starts once
   * the answer is flushed).
   */
  get idle(): boolean {
    return (
      this.current === undefined &&
      this.queue.length === 0 &&
      (this.parsing === NONE || this.fresh) &&
      !this.flushing
    );
  }

  /** A request head or body took too long (checked by the server's tick). */
  timedOut(): void {
    this.rawAnswer("408 Request Timeout");
  }

  onParseError(err: Error): void {
    // Bytes after a last request (data after `Connection: close`): dropped. Not the last
    // request's own body: its handler would wait for the rest until a timeout.
    if (this.stopped && this.reading === undefined) return;
    const code = (err as Error & { code?: string }).code;
    this.rawAnswer(
      code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request",
    );
  }

  /** A bare status, then close (also for a malformed body: its handler sees the client gone). */
  private rawAnswer(status: string): void {
    if (this.dead) return;
    // After the answer, lingering (a malformed rest, or too slow): nothing more to say.
    if (this.lingering !== undefined) return this.closeAfterLinger();
    this.closing = true;
    this.sync();
    const cur = this.current;
    if (cur?.res.started === true) {
      this.destroy();
      return;
    }
    this.deferred = undefined;
    this.socket.write(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`, "latin1");
    this.endSoon();
    this.current = undefined;
    const reading = this.reading;
    this.reading = undefined;
    if (reading !== undefined && !reading.complete) reading.destroy(new Error(status));
    cur?.res.connectionClosed();
    for (const ex of this.queue.splice(0)) ex.res.connectionClosed();
  }

  private onEnd(): void {
    if (this.lingering !== undefined) return this.closeAfterLinger();
    // The client sent FIN: as node's server (httpAllowHalfOpen off), what it asked is dropped.
    if (this.current === undefined && this.queue.length === 0 && this.reading === undefined)
      this.endSoon();
    else this.destroy();
  }

  private onClose(): void {
    if (this.dead) return;
    this.dead = true;
    this.deferred = undefined;
    clearTimeout(this.lingerTimer);
    this.host.gone(this);
    const reading = this.reading;
    this.reading = undefined;
    if (reading !== undefined && !reading.complete)
      reading.destroy(Object.assign(new Error("aborted"), { code: "ECONNRESET" }));
    this.current?.res.connectionClosed();
    this.current = undefined;
    for (const ex of this.queue.splice(0)) ex.res.connectionClosed();
    setImmediate(closeParser, this.reader.parser);
  }
}
