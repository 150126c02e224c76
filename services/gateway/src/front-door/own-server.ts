import type http from "node:http";
import net, { type AddressInfo } from "node:net";
import { sleep } from "@fizz/kit";
import { OwnConnection, type ConnectionHost } from "./own-connection";
import type { ProxyServer, ServerLimits } from "./server-types";

/**
 * The gateway's own client-facing HTTP/1.1 server (FIZZ_GATEWAY_FRONTEND=own): the same handler,
 * limits and drain as node's http.Server in `listenProxy`, on llhttp driven directly
 * (own-connection.ts) and request/response objects carrying only what the gateway's handlers use
 * (own-request.ts, own-response.ts). Node's server spends a good share of the gateway's CPU per
 * request on its stream machinery (several ticks as a request ends, is dumped and destroyed; the
 * head and body written apart); this one writes an answer in one write and schedules nothing.
 */
class OwnServer implements ConnectionHost {
  draining = false;
  readonly conns = new Set<OwnConnection>();
  private dateSecond = -1;
  private date = "";
  private readonly keepAliveHeader: string;

  constructor(
    readonly handler: http.RequestListener,
    private readonly limits: ServerLimits,
    private readonly requestTimeoutMs: number,
  ) {
    this.keepAliveHeader = `connection: keep-alive\r\nkeep-alive: timeout=${Math.floor(
      limits.keepAliveTimeoutMs / 1000,
    )}\r\n`;
  }

  commonHeaders(keepAlive: boolean, date: boolean): string {
    const k = keepAlive && !this.draining ? this.keepAliveHeader : "connection: close\r\n";
    if (!date) return k;
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.dateSecond) {
      this.dateSecond = second;
      this.date = `date: ${new Date(now).toUTCString()}\r\n`;
    }
    return this.date + k;
  }

  gone(conn: OwnConnection): void {
    this.conns.delete(conn);
  }

  /** Node's connectionsCheckingInterval: heads, requests and idle connections that overstay. */
  check(): void {
    const now = Date.now();
    const { headersTimeoutMs, keepAliveTimeoutMs } = this.limits;
    for (const c of this.conns) {
      if (c.held) {
        // Requests wait their turn: for an answer being made (no timeout), or for the client to
        // take the answers before them, which one that stopped reading must not hold for good.
        if (c.flushMoved()) c.idleSince = now;
        else if (now - c.idleSince > keepAliveTimeoutMs) c.kill();
        continue;
      }
      if (c.parsing === 1) {
        if (headersTimeoutMs > 0 && now - c.parseStart > headersTimeoutMs) c.timedOut();
      } else if (c.parsing === 2) {
        if (this.requestTimeoutMs > 0 && now - c.parseStart > this.requestTimeoutMs) c.timedOut();
      } else if (c.flushing) {
        // The keep-alive timeout counts from when the last answer is out, not from its end(); a
        // client that stops taking an answer it was given is cut after it too (nginx's
        // send_timeout), or it would hold its socket and the answer's unwritten bytes for good.
        if (c.flushMoved()) c.idleSince = now;
        else if (now - c.idleSince > keepAliveTimeoutMs) c.kill();
      } else if (c.idle) {
        if (c.flushedOut()) c.idleSince = now;
        else if (now - c.idleSince > keepAliveTimeoutMs) c.kill();
      }
    }
  }

  closeIdle(): void {
    for (const c of this.conns) if (c.idle) c.kill();
  }
}

export async function listenOwn(
  handler: http.RequestListener,
  host: string,
  port: number,
  active: { count: number },
  limits: ServerLimits,
  requestTimeoutMs: number,
): Promise<ProxyServer> {
  const own = new OwnServer(handler, limits, requestTimeoutMs);
  const server = net.createServer({ noDelay: true }, (socket) => {
    if (own.draining) {
      socket.destroy();
      return;
    }
    own.conns.add(new OwnConnection(socket, own));
  });
  server.maxConnections = limits.maxConnections;
  const tick = setInterval(
    () => own.check(),
    Math.min(1000, Math.max(100, limits.headersTimeoutMs / 4)),
  );
  tick.unref();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host, backlog: 4096 }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    drain: async (timeoutMs) => {
      own.draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      const deadline = Date.now() + timeoutMs;
      own.closeIdle();
      while (active.count > 0 && Date.now() < deadline) {
        own.closeIdle();
        await sleep(25);
      }
      for (const c of own.conns) c.kill();
      clearInterval(tick);
      await closed;
    },
  };
}
