import http from "node:http";
import net from "node:net";
import { expect } from "chai";
import { listenProxy, type ProxyServer, type ServerLimits } from "../src/front-door/server";

const limits = (frontend: "node" | "own"): ServerLimits => ({
  maxConnections: 100,
  headersTimeoutMs: 1000,
  requestTimeoutMs: 3000,
  keepAliveTimeoutMs: 1000,
  frontend,
});

/** Far more than the socket buffers take: most of it waits for the client to read. */
const BIG = 16 << 20;
const big: http.RequestListener = (_req, res) => {
  res.writeHead(200, { "content-length": String(BIG) });
  res.end(Buffer.alloc(BIG, 120));
};

/** Sends `request`, reads nothing for `waitMs`, then reads until the connection ends. */
async function slowRead(port: number, request: string, waitMs: number): Promise<number> {
  const s = net.connect(port, "127.0.0.1");
  s.on("error", () => undefined);
  s.pause();
  await new Promise<void>((r) => s.once("connect", () => r()));
  s.write(request);
  await new Promise((r) => setTimeout(r, waitMs));
  let got = 0;
  s.on("data", (d: Buffer) => (got += d.length));
  s.resume();
  await new Promise<void>((r) => {
    s.once("close", () => r());
    setTimeout(r, 10_000);
  });
  s.destroy();
  return got;
}

/**
 * A connection is not idle while an answer is still going out to a slow reader: neither the
 * keep-alive timeout nor a connection-ending answer may cut a download the client is taking.
 */
for (const frontend of ["node", "own"] as const)
  describe(`gateway front door closing a connection (${frontend} front end)`, function () {
    this.timeout(30_000);
    let server: ProxyServer;
    afterEach(async () => server?.drain(0));

    it("lets a slow reader take a whole answer that ends its connection", async () => {
      server = await listenProxy(big, "127.0.0.1", 0, { count: 0 }, limits(frontend));
      const got = await slowRead(
        server.port,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        2500,
      );
      expect(got).to.be.greaterThan(BIG);
    });

    it("counts the keep-alive timeout from when a slow reader has taken the answer", async () => {
      server = await listenProxy(big, "127.0.0.1", 0, { count: 0 }, limits(frontend));
      // Past the keep-alive timeout (1 s) before the client reads a byte.
      const got = await slowRead(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2500);
      expect(got).to.be.greaterThan(BIG);
    });
  });
