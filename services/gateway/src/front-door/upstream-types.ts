import type { Readable } from "node:stream";

/**
 * What the upstream client is asked and whom it answers (its own file so the client and its
 * connections share them without importing each other). The handler interface is undici's, so
 * proxy.ts drives both clients alike.
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
  /**
   * The request's body, with `content-length` written by the client itself (any in `headers` is
   * left out). Bytes go out with the head in one write. A stream is sent after the head as the
   * socket takes it (paused while it does not) under `content-length: bodyLength`: never a byte
   * past it, and a stream that ends short or fails ends the connection.
   */
  body?: Readable | Uint8Array;
  /** A stream's length (bytes carry their own). */
  bodyLength?: number;
}
