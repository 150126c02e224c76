import net from "node:net";
import type { AddressInfo } from "node:net";
import {
  upstreamClient,
  type UpstreamHandler,
  type UpstreamRequest,
} from "../src/front-door/upstream-client";

/**
 * The upstream client's tests' fixtures: the client against a raw TCP server that answers with exactly the
 * bytes a test gives, so framing (and its refusal) is what is under test, not a server's.
 */
export interface Seen {
  requests: string[];
  connections: number;
}

export async function rawServer(
  answer: (req: string, n: number, sock: net.Socket) => void,
): Promise<{ url: string; seen: Seen; close(): Promise<void> }> {
  const seen: Seen = { requests: [], connections: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    seen.connections++;
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    let buf = "";
    sock.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      let i;
      while ((i = buf.indexOf("\r\n\r\n")) >= 0) {
        const req = buf.slice(0, i + 4);
        buf = buf.slice(i + 4);
        seen.requests.push(req);
        answer(req, seen.requests.length, sock);
      }
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export interface Outcome {
  status?: number;
  headers?: string[];
  body: string;
  connected: boolean;
  error?: Error & { code?: string };
}

export function call(url: string, req: Partial<UpstreamRequest> = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const out: Outcome = { body: "", connected: false };
    const handler: UpstreamHandler = {
      onConnect: () => (out.connected = true),
      onHeaders: (status, raw) => {
        out.status = status;
        out.headers = raw;
        return true;
      },
      onData: (chunk) => {
        out.body += chunk.toString();
        return true;
      },
      onComplete: () => resolve(out),
      onError: (err) => {
        out.error = err;
        resolve(out);
      },
    };
    upstreamClient(url).dispatch(
      { method: "GET", path: "/x", headers: [], headersTimeout: 0, bodyTimeout: 0, ...req },
      handler,
    );
  });
}

export const OK = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
