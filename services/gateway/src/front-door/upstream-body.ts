import type net from "node:net";
import type { Readable } from "node:stream";
import { coded } from "./upstream-parser";

/**
 * A request body of a known length on its way to the instance, after its head (upstream-
 * connection.ts). Bytes past the length in the head are never written (the instance would read
 * them as another request): the request fails first. A body that fails (the client went away, or
 * sent too much) fails the request with its own error, which the proxy reads as the client's
 * fault; one that ends short, or closes before its end, fails it too.
 */
export class BodySender {
  private active = true;
  private left: number;

  /**
   * Watched from construction, not from `start`: a retry's body is read from the client (body.ts)
   * while its connection is still being made, and may fail or close before then. Without a
   * listener a stream's 'error' is an uncaught exception in the gateway.
   */
  constructor(
    private readonly socket: net.Socket,
    private readonly body: Readable,
    length: number,
    private readonly failed: (err: Error) => void,
  ) {
    this.left = length;
    body.once("error", (err: Error) => {
      if (this.active) failed(err);
    });
    // A stream destroyed without an error (the proxy closed it: client gone, answered) ends short.
    body.once("close", () => {
      if (this.active) failed(coded("request body closed before its end", "UND_ERR_ABORTED"));
    });
  }

  /**
   * Bytes the head promised that were not written yet. At 0 the instance has its whole request,
   * so the connection may carry another once the answer is read, whether or not the stream has
   * emitted its 'end' yet.
   */
  get owed(): number {
    return this.left;
  }

  /**
   * Streams the body, paused while the socket is full. The caller corked the socket and wrote the
   * head: head and body go in one write when the body is at hand (a small one usually came in the
   * client's read that carried its head), else the head goes at this turn's end.
   */
  start(): void {
    const { socket, body } = this;
    let corked = true;
    const uncork = (): void => {
      if (corked) {
        corked = false;
        socket.uncork();
      }
    };
    setImmediate(uncork);
    const resume = (): void => {
      if (this.active) body.resume();
    };
    body.on("data", (chunk: Buffer) => {
      if (!this.active) return;
      if (chunk.length > this.left) {
        this.failed(
          coded(
            "request body longer than its content-length",
            "UND_ERR_REQ_CONTENT_LENGTH_MISMATCH",
          ),
        );
        return;
      }
      this.left -= chunk.length;
      const room = socket.write(chunk);
      uncork();
      if (!room) {
        body.pause();
        socket.once("drain", resume);
      }
    });
    body.once("end", () => {
      if (!this.active) return;
      if (this.left !== 0)
        this.failed(
          coded(
            "request body shorter than its content-length",
            "UND_ERR_REQ_CONTENT_LENGTH_MISMATCH",
          ),
        );
      else this.stop(false);
    });
  }

  /** No more is sent: the body ended whole, or the request is over (`destroy`: stop its stream). */
  stop(destroy: boolean): void {
    if (!this.active) return;
    this.active = false;
    if (destroy) this.body.destroy();
  }
}
