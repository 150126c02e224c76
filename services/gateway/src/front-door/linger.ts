import { IncomingMessage } from "node:http";

/**
 * How long a connection closed after an answer keeps reading and dropping the rest of a refused
 * body (nginx's lingering_timeout is 5 s): enough for a load balancer to send a buffered upload
 * of tens of MB over a LAN, short enough that a client cannot hold the socket on it for long.
 */
export const LINGER_MS = 5000;

/**
 * node's server, for an answer that closes the connection (`connection: close`) before the
 * request's body ended (a 413, a refusal): end our side after the answer, read and drop the rest
 * until the body ends or `ms` pass, then close. node's own close (destroySoon) destroys the
 * socket once the answer is written, with the client's bytes still arriving: the kernel then
 * resets the connection and throws away the answer the client has not read yet, so a client (or a
 * load balancer with request buffering) that sends its whole body before reading saw a reset, not
 * the 413 (nginx answered 502). The own front end lingers itself; its requests are not node's.
 * Call it once the answer is given, with nobody else reading the body.
 */
export function lingerClose(req: unknown, ms: number = LINGER_MS): void {
  if (!(req instanceof IncomingMessage) || req.complete) return;
  const socket = req.socket;
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), ms);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));
  // Only the FIN where node would destroy; the destroy comes at the body's end (or the timer).
  socket.destroySoon = function (this: typeof socket) {
    this.end();
  };
  req.once("end", () => {
    clearTimeout(timer);
    if (socket.writableFinished) socket.destroy();
    else socket.once("finish", () => socket.destroy());
  });
  req.resume();
}
