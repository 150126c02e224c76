import type net from "node:net";
import { LINGER_MS } from "./linger";
import type { OwnRequest } from "./own-request";
import { sendProgress } from "./send-timeout";

/**
 * Bodies up to this many bytes are written inside their head's string (`write`): with a head
 * it stays within what node writes from the stack without an allocation (16 KiB).
 */
const INLINE_BODY_MAX = 8192;

/**
 * The socket side of an own front end connection (own-connection.ts, which parses and answers its
 * requests): whether it is read (a body's backpressure), how answers are written and how far they
 * went out (the server's timeouts), and how it ends. A base class, not an object beside it: nothing
 * more to allocate or follow per connection or request.
 */
export abstract class OwnSocket {
  dead = false;
  /** The connection is being ended. */
  protected closing = false;
  /** Its last bytes are being flushed, then it closes. */
  protected ending = false;
  /** A last request was read: what follows is not taken (the socket is still read). */
  protected stopped = false;
  protected bodyPaused = false;
  /** Answered and closing while this request's body still comes: read and dropped, then closed. */
  protected lingering: OwnRequest | undefined;
  protected lingerTimer: NodeJS.Timeout | undefined;

  constructor(readonly socket: net.Socket) {}

  /** Reads the socket or not, as the connection's state says. */
  protected abstract sync(): void;

  /** A request's body is wanted again (own-request.ts). */
  readMore(): void {
    this.bodyPaused = false;
    this.sync();
  }

  /** A request's body reader is behind: the socket is not read meanwhile. */
  readLess(): void {
    this.bodyPaused = true;
    this.sync();
  }

  /** A request destroyed before it was complete: the connection goes. */
  abort(_err: Error | null): void {
    this.destroy();
  }

  write(data: string | Buffer, more?: Buffer, tail?: string): boolean {
    if (this.dead) return false;
    const s = this.socket;
    if (more === undefined) return s.write(data, "latin1");
    // A small body goes out inside the head's string (latin1 keeps every byte as it is): one
    // write of one string, not a cork, two buffered writes and a writev of parts, which cost
    // the stream machinery more than the copy (nearly every proxied answer is this small).
    if (typeof data === "string" && more.length <= INLINE_BODY_MAX)
      return s.write(data + more.toString("latin1") + (tail ?? ""), "latin1");
    s.cork();
    s.write(data, "latin1");
    let ok = s.write(more);
    if (tail !== undefined) ok = s.write(tail, "latin1");
    s.uncork();
    return ok;
  }

  /** Bytes of an answer are still waiting for the client to read them. */
  get flushing(): boolean {
    return this.socket.writableLength > 0;
  }

  /** The socket's send progress at the last `flushMoved` (send-timeout.ts). */
  private unflushed = "";
  /** Bytes waited for the client at the last `flushMoved`. */
  private waited = false;

  /**
   * Whether the client took some of an answer since the last call (or nothing waits for it: an
   * answer still being made): a slow reader, as opposed to one that stopped reading. An answer
   * still being written whose bytes wait is no exception: its function's stream is held back by
   * this client, which would hold both for good.
   */
  flushMoved(): boolean {
    const n = sendProgress(this.socket);
    const waiting = this.socket.writableLength > 0;
    const moved = n !== this.unflushed || !waiting;
    this.unflushed = n;
    this.waited = waiting;
    return moved;
  }

  /**
   * Nothing waits now: whether bytes waited at the last sample, i.e. the last answer went out
   * since the tick before, once. The keep-alive timeout counts from then, not from the last tick
   * that saw the client take bytes: one that paused its read most of the timeout, then took the
   * answer, would otherwise be cut soon after, its next request racing the close.
   */
  flushedOut(): boolean {
    const was = this.waited;
    this.waited = false;
    return was;
  }

  /** Ends the connection once what was written is flushed. */
  protected endSoon(): void {
    this.closing = true;
    this.ending = true;
    this.sync();
    const s = this.socket;
    s.end(() => s.destroy());
  }

  /**
   * An answer that closes the connection while its request's body still comes (a 413, a
   * refusal): our side ends after it, and the rest is read and dropped until the body ends (or
   * LINGER_MS pass), then the socket closes. Closing at once, the client's bytes still arriving,
   * makes the kernel reset the connection and throw away the answer the client has not read yet:
   * a client (or a load balancer with request buffering) that sends its whole body before it
   * reads saw a reset, not the 413 (nginx answered its client 502). Nothing after this request
   * is taken.
   */
  protected linger(req: OwnRequest): void {
    this.closing = true;
    this.ending = true;
    this.stopped = true;
    this.lingering = req;
    req.discard();
    this.bodyPaused = false;
    this.lingerTimer = setTimeout(() => this.kill(), LINGER_MS);
    this.lingerTimer.unref();
    this.socket.end();
    this.sync();
  }

  protected closeAfterLinger(): void {
    this.lingering = undefined;
    clearTimeout(this.lingerTimer);
    this.sync();
    const s = this.socket;
    if (s.writableFinished) s.destroy();
    else s.once("finish", () => s.destroy());
  }

  /** Cuts the connection, unless it is already ending after a last answer (let that out). */
  destroy(): void {
    if (!this.dead && !this.ending) this.socket.destroy();
  }

  /** Cuts the connection now (the server's timeouts and drain). */
  kill(): void {
    if (!this.dead) this.socket.destroy();
  }
}
