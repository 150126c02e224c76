import { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import { lingerClose } from "./linger";

/**
 * The client's request body as a stream per upstream attempt. The client request itself is never
 * handed to undici: undici destroys a body stream when a request fails, which would kill the
 * client's connection before we could answer or retry. Each attempt gets a small Readable fed from
 * the client request, with backpressure (the client is paused while the upstream is slow).
 *
 * Chunks already sent are kept (up to `replayLimit`) so a retry after 421/NOT_SPECIALIZED or a
 * refused connection can send the same body again; past that the body is not replayable and the
 * proxy answers instead of retrying.
 */
export class BodySource {
  /** Bytes received from the client so far. */
  received = 0;
  tooLarge = false;
  /** The client went away (or its stream failed) before the body ended. */
  clientFailed = false;
  private ended = false;
  private saved: Buffer[] | null = [];
  private savedBytes = 0;
  private current: Readable | null = null;
  private attached = false;
  /** The last pause was the instance's: the attempt's stream was full. */
  private backpressured = false;
  private idleTimer: NodeJS.Timeout | undefined;
  /** The body, once taken whole (`whole()`). */
  private wholeBody: Buffer | undefined;

  /**
   * `idleMs`: a client that sends no body byte for this long while the gateway wants more is cut
   * off (0 = never), so a trickling upload cannot hold an instance's slot for minutes. Time spent
   * paused by backpressure (the function reading slowly) does not count.
   */
  constructor(
    private readonly req: IncomingMessage,
    private readonly limit: number,
    private readonly replayLimit = 256 * 1024,
    private readonly idleMs = 0,
    /**
     * The client's Content-Length, -1 for a chunked body. The client's parser frames the body by
     * it, so a stream that ends ends with exactly this many bytes (or fails).
     */
    readonly length = -1,
  ) {}

  /**
   * The body is still coming and the gateway was last waiting for the client's next bytes, not
   * for the instance to take the ones it has (read before a failed attempt's stream is dropped,
   * this still says what held the request up).
   */
  get waitingForClient(): boolean {
    return (
      this.attached && !this.ended && !this.clientFailed && !this.tooLarge && !this.backpressured
    );
  }

  /** Whether `open()` may be called again (everything read so far is still held). */
  get replayable(): boolean {
    return this.saved !== null && !this.tooLarge && !this.clientFailed;
  }

  /**
   * The whole body as one buffer, when the client has sent all of it and nothing was read yet: a
   * small body nearly always comes in the read that carried its head, so the request is complete
   * when it is proxied. Then no stream is made per attempt: the upstream client writes the bytes
   * with the head (upstream-client.ts), and a retry sends the same buffer. Undefined otherwise
   * (still coming, chunked, or too large to hold for a replay): stream it with `open()`.
   */
  whole(): Buffer | undefined {
    if (this.wholeBody !== undefined) return this.wholeBody;
    const req = this.req;
    if (
      this.attached ||
      this.current !== null ||
      this.length <= 0 ||
      this.length > this.replayLimit ||
      !req.complete ||
      req.readableFlowing === true ||
      req.readableLength !== this.length
    )
      return undefined;
    // Paused, with every byte buffered: read() hands them all over at once.
    const chunk = req.read() as Buffer | null;
    if (chunk === null) return undefined;
    if (chunk.length !== this.length) {
      // Not reachable while the parser frames the body by its length; if it were, the bytes read
      // are not lost: they are what a stream opened now starts with.
      this.saved = [chunk];
      this.savedBytes = this.received = chunk.length;
      return undefined;
    }
    this.received = this.savedBytes = chunk.length;
    this.saved = [chunk];
    this.ended = true;
    this.wholeBody = chunk;
    return chunk;
  }

  /** A fresh stream for one attempt: what was already read, then the rest of the client body. */
  open(): Readable {
    this.current?.destroy();
    const stream: Readable = new Readable({
      read: () => this.pull(stream),
      destroy: (err, cb) => {
        if (this.current === stream) {
          this.current = null;
          if (!this.ended) this.req.pause();
          this.disarmIdle();
        }
        cb(err);
      },
    });
    this.current = stream;
    if (this.saved) for (const chunk of this.saved) stream.push(chunk);
    if (this.ended) stream.push(null);
    return stream;
  }

  /** Stops feeding the current attempt (the client is answered without it). */
  close(): void {
    this.current?.destroy();
  }

  /**
   * The client is answered and the rest of its body is not wanted: read it off the wire and drop
   * it, so a kept-alive connection reaches its next request. node's server drains only a request
   * nobody listened to (ours was); left paused, the connection stalled behind the unread bytes.
   * The own front end drops an answered request's rest itself (a resume there could send a
   * 100 Continue after the answer). The request timeout bounds how long a client can send.
   */
  dropRest(): void {
    this.close();
    if (this.ended || this.tooLarge || this.clientFailed) return;
    if (!(this.req instanceof IncomingMessage)) return;
    this.disarmIdle();
    this.req.removeListener("data", this.onData);
    this.req.resume();
  }

  /** The answer closes the connection before the body ended: see lingerClose. */
  linger(ms: number): void {
    this.close();
    if (this.ended) return;
    this.disarmIdle();
    this.req.removeListener("data", this.onData);
    lingerClose(this.req, ms);
  }

  private pull(stream: Readable): void {
    if (stream !== this.current || this.ended) return;
    if (!this.attached) {
      this.attached = true;
      this.req.on("data", this.onData);
      this.req.on("end", this.onEnd);
      this.req.on("error", this.onFail);
      this.req.on("close", this.onClose);
    }
    this.backpressured = false;
    this.req.resume();
    this.armIdle();
  }

  private armIdle(): void {
    if (this.idleMs <= 0 || this.ended) return;
    if (this.idleTimer) this.idleTimer.refresh();
    else
      this.idleTimer = setTimeout(() => {
        this.idleTimer = undefined;
        if (this.ended || this.req.isPaused()) return;
        this.onFail(new Error(`no request body bytes for ${this.idleMs} ms`));
        this.req.destroy();
      }, this.idleMs);
  }

  private disarmIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private readonly onData = (chunk: Buffer): void => {
    this.received += chunk.length;
    this.armIdle();
    if (this.received > this.limit) {
      this.tooLarge = true;
      this.saved = null;
      this.req.pause();
      this.current?.destroy(new BodyTooLargeError(this.limit));
      return;
    }
    if (this.saved) {
      this.savedBytes += chunk.length;
      if (this.savedBytes > this.replayLimit) this.saved = null;
      else this.saved.push(chunk);
    }
    const s = this.current;
    if (!s) {
      this.req.pause();
      this.disarmIdle();
      return;
    }
    if (!s.push(chunk)) {
      this.backpressured = true;
      this.req.pause();
      this.disarmIdle();
    }
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.disarmIdle();
    this.current?.push(null);
  };

  private readonly onFail = (err: Error): void => {
    this.disarmIdle();
    if (this.ended) return;
    this.clientFailed = true;
    this.current?.destroy(err);
  };

  private readonly onClose = (): void => {
    this.disarmIdle();
    if (!this.ended && !this.tooLarge) this.onFail(new Error("client closed the request body"));
  };
}

export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body exceeds ${limit} bytes`);
  }
}
