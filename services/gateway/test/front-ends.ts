import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Readable } from "node:stream";
import { listenOwn } from "../src/front-door/own-server";
import type { ServerLimits } from "../src/front-door/server-types";
import { HTTPParser } from "../src/front-door/upstream-parser";

/**
 * Either client-facing front end (the own one, FIZZ_GATEWAY_FRONTEND=own, and node's http.Server)
 * on a random port with a test's handler, and what the request-body tests share.
 */
export const limits: ServerLimits = {
  maxConnections: 100,
  headersTimeoutMs: 4000,
  requestTimeoutMs: 8000,
  keepAliveTimeoutMs: 8000,
  frontend: "own",
};

/** Where `consume` lives: taken away, the own front end reads the socket in JS ('data' events). */
export const parserProto = (
  HTTPParser as unknown as { prototype: { consume?: unknown } } | undefined
)?.prototype;

export async function listen(
  frontend: "node" | "own",
  handler: http.RequestListener,
): Promise<{ port: number; close(): Promise<void> }> {
  if (frontend === "own") {
    const server = await listenOwn(handler, "127.0.0.1", 0, { count: 0 }, limits, 5000);
    return { port: server.port, close: () => server.drain(100) };
  }
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Resolves once `check` holds; fails after `ms` (under the keep-alive timeout above). */
export async function until(check: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Everything a stream gives, joined. */
export function collectBytes(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => resolve(Buffer.concat(chunks)));
    stream.on("error", reject);
  });
}
