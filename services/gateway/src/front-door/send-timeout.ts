import type net from "node:net";

/** Unwritten bytes of a socket: in the stream's buffer, and in libuv's queue. */
function unwritten(socket: net.Socket): string {
  const queued = (socket as { _handle?: { writeQueueSize?: number } | null })._handle
    ?.writeQueueSize;
  return `${socket.writableLength}:${queued ?? ""}`;
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
  const watched = new Map<net.Socket, { unwritten: string; since: number }>();
  server.on("connection", (socket: net.Socket) => {
    watched.set(socket, { unwritten: "", since: 0 });
    socket.once("close", () => watched.delete(socket));
  });
  const tick = setInterval(() => {
    const now = Date.now();
    for (const [socket, w] of watched) {
      if (socket.writableLength === 0) {
        w.unwritten = "";
        continue;
      }
      const n = unwritten(socket);
      if (n !== w.unwritten) {
        w.unwritten = n;
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
