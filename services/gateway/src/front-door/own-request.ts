import type { Socket } from "node:net";
import { Readable } from "node:stream";

/** What a request asks of the connection it came on (own-connection.ts). */
export interface RequestSource {
  readonly socket: Socket;
  /** The body is wanted again after backpressure: read the socket on. */
  readMore(): void;
  /** The body is not wanted (paused past the buffer): stop reading the socket. */
  readLess(): void;
  /** The request was destroyed before it was complete: the connection goes. */
  abort(err: Error | null): void;
}

/**
 * A client request of the own front end (FIZZ_GATEWAY_FRONTEND=own), with the members of
 * http.IncomingMessage the gateway's handlers use (server.ts, body.ts, async-http.ts, ops):
 * `method`, `url`, `rawHeaders`, `headers`, `socket`, `complete`, and the body as a Readable
 * whose backpressure stops reading the client's socket.
 */
export class OwnRequest extends Readable {
  complete = false;
  private lowerHeaders: Record<string, string | string[]> | undefined;

  constructor(
    private readonly source: RequestSource,
    readonly method: string,
    readonly url: string,
    readonly rawHeaders: string[],
    readonly httpVersion: string,
    /** Expect: 100-continue: "100 Continue" is sent when the body is first read. */
    private continueWanted: (() => void) | undefined,
  ) {
    super();
  }

  get socket(): Socket {
    return this.source.socket;
  }

  /** As IncomingMessage's: lower-case names, repeated values joined with ", " (arrays: set-cookie). */
  get headers(): Record<string, string | string[]> {
    if (this.lowerHeaders !== undefined) return this.lowerHeaders;
    const h: Record<string, string | string[]> = {};
    const raw = this.rawHeaders;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      const value = raw[i + 1] as string;
      const prev = h[name];
      if (prev === undefined) h[name] = name === "set-cookie" ? [value] : value;
      else if (Array.isArray(prev)) prev.push(value);
      else h[name] = `${prev}, ${value}`;
    }
    return (this.lowerHeaders = h);
  }

  /** Answered already: the rest of the body is dropped (as IncomingMessage's `_dump`). */
  private dropping = false;
  /** The stream was read (or made to flow) at least once. */
  private readAsked = false;

  /** The request was answered before "100 Continue" was sent: its client may not send a body. */
  get continuePending(): boolean {
    return this.continueWanted !== undefined;
  }

  /** A body chunk from the parser; the socket is paused while the reader is behind. */
  body(chunk: Buffer): void {
    if (this.dropping) return;
    if (!this.push(chunk)) this.source.readLess();
  }

  discard(): void {
    this.dropping = true;
  }

  /** The whole request was received. */
  ended(): void {
    this.complete = true;
    this.continueWanted = undefined;
    // Nobody read yet (a bodiless request, nearly all): the end is pushed when someone does, so
    // an unread request schedules nothing (a stream's end is emitted on a later tick).
    if (this.readAsked && !this.dropping) this.push(null);
  }

  override _read(): void {
    if (!this.readAsked) {
      this.readAsked = true;
      if (this.complete && !this.dropping) {
        this.push(null);
        return;
      }
    }
    const c = this.continueWanted;
    if (c !== undefined) {
      this.continueWanted = undefined;
      c();
    }
    if (!this.complete) this.source.readMore();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // As IncomingMessage: destroying a request not yet received cuts its connection, and an
    // abort nobody listens for is not thrown.
    if (!this.complete) this.source.abort(err);
    cb(this.listenerCount("error") > 0 ? err : null);
  }
}
