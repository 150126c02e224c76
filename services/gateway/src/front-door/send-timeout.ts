import type http from "node:http";
import type net from "node:net";

/**
 * How far a socket's writes have gone out, for the send timeouts of both front ends: the bytes
 * of its completed writes (handed over, less those not done), and libuv's queue, which shows the
 * partial writes of one still going. The first only grows, so a sample never matches one from an
 * earlier stall with bytes gone out between; the unwritten lengths alone matched when a next
 * answer like the last stalled as it had (one unread 16 MiB answer after another), and the
 * earlier stall's start was taken for this one's.
 */
export function sendProgress(socket: net.Socket): string {
  const queued = (socket as { _handle?: { writeQueueSize?: number } | null })._handle
    ?.writeQueueSize;
  return `${socket.bytesWritten - socket.writableLength}:${queued ?? ""}`;
}

/**
 * The send timeout of node's front end (the own front end's, own-server.ts): a connection whose
 * answer bytes have waited `timeoutMs` for the client without it taking any is destroyed, as
 * nginx's send_timeout. node's server has no such limit: its keep-alive timeout starts once an
 * answer is flushed, its request timeout stops once the request is read, so a client that stops
 * reading (or pipelines and never reads) holds its socket, and the upstream answer waiting behind
 * it, for good. A slow reader moves the bytes (a large write stays whole in the stream's count
 * until it is out; libuv's queue shows its partial writes), so only a stalled one is cut; nothing
 * pending (an answer still being made, an idle keep-alive) is not this limit's business.
 * Checked on a tick, as node's connectionsCheckingInterval: no timer per write. Returns the stop.
 */
export function watchSendProgress(
  server: net.Server,
  timeoutMs: number,
  intervalMs: number,
): () => void {
  const watched = new Map<net.Socket, { progress: string; since: number }>();
  server.on("connection", (socket: net.Socket) => {
    watched.set(socket, { progress: "", since: 0 });
    socket.once("close", () => watched.delete(socket));
  });
  const tick = setInterval(() => {
    const now = Date.now();
    for (const [socket, w] of watched) {
      if (socket.writableLength === 0) {
        w.progress = "";
        continue;
      }
      const n = sendProgress(socket);
      if (n !== w.progress) {
        w.progress = n;
        w.since = now;
      } else if (now - w.since > timeoutMs) {
        socket.destroy();
      }
    }
  }, intervalMs);
  tick.unref();
  return () => {
    clearInterval(tick);
    watched.clear();
  };
}

const kQueued = Symbol("fizz.queuedAnswers");
type Tracked = net.Socket & { [kQueued]?: Set<http.ServerResponse> | undefined };

function closeAnswer(res: http.ServerResponse): void {
  if (res.destroyed) return;
  res.destroyed = true;
  res.emit("close");
}

function onConnectionClose(this: Tracked): void {
  const queued = this[kQueued];
  this[kQueued] = undefined;
  if (queued !== undefined) for (const res of queued) closeAnswer(res);
}

/** Its turn came: node closes it with its connection from then on. */
function onAnswerSocket(this: http.ServerResponse, socket: Tracked): void {
  socket[kQueued]?.delete(this);
}

/**
 * node's server gives an answer its "close" only once it is on the socket. One pipelined behind
 * another waits in the server with no socket and gets none when the connection ends (the client
 * left, or the send timeout above cut it): its call never learns that nobody will take it, and a
 * streamed one waits for a "drain" that never comes, holding the function's slot, the upstream
 * answer and the server's count of calls in flight for good. Such an answer closes with its
 * connection, as the one on the socket does (one listener per connection, not per answer: a
 * pipelining client queues thousands).
 */
export function closeQueuedAnswers(handler: http.RequestListener): http.RequestListener {
  return (req, res) => {
    if (res.socket === null) {
      const socket = req.socket as Tracked;
      if (socket.closed) process.nextTick(closeAnswer, res);
      else {
        let queued = socket[kQueued];
        if (queued === undefined) {
          queued = socket[kQueued] = new Set();
          socket.once("close", onConnectionClose);
        }
        queued.add(res);
        res.once("socket", onAnswerSocket);
      }
    }
    handler(req, res);
  };
}
