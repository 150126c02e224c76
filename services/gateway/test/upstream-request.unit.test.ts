import net, { type AddressInfo } from "node:net";
import { expect } from "chai";
import { closeUpstreamClients } from "../src/front-door/upstream-client";
import {
  ResponseTooLarge,
  upstreamRequest,
  type WholeRequest,
} from "../src/front-door/upstream-request";

/**
 * The bus side's whole-request calls over the upstream client, against a raw TCP server that
 * records every byte and answers what a test gives.
 */
async function rawServer(answer: (sock: net.Socket, data: string) => void) {
  const received: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on("data", (d: Buffer) => {
      received.push(d.toString("latin1"));
      answer(sock, received.join(""));
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    connections: () => sockets.size,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const base: WholeRequest = {
  method: "POST",
  path: "/",
  headers: ["content-type", "text/plain"],
  body: Buffer.from("payload"),
  answerTimeout: 0,
  headersTimeout: 0,
  bodyTimeout: 0,
  maxResponseBytes: 1024,
};

const outcome = (p: Promise<unknown>) =>
  p.then(
    (v) => v,
    (e: Error & { code?: string }) => e,
  );

describe("upstream request (the bus side's whole calls)", () => {
  afterEach(() => closeUpstreamClients());

  it("sends the body with its head under its own length, and returns the whole answer", async () => {
    const s = await rawServer((sock, data) => {
      if (data.endsWith("payload"))
        sock.write("HTTP/1.1 201 Created\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 2\r\n\r\nok");
    });
    try {
      const res = await upstreamRequest(s.url, {
        ...base,
        headers: ["content-length", "99", "content-type", "text/plain"],
      });
      expect(res.status).to.equal(201);
      expect(res.body.toString()).to.equal("ok");
      expect(res.raw).to.deep.equal(["X-A", "1", "X-A", "2", "Content-Length", "2"]);
      const port = new URL(s.url).port;
      expect(s.received.join("")).to.equal(
        `POST / HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: text/plain\r\n` +
          "content-length: 7\r\n\r\npayload",
      );
    } finally {
      await s.close();
    }
  });

  it("fails an answer past its limit with ResponseTooLarge, without keeping the rest", async () => {
    const s = await rawServer((sock) => {
      sock.write(`HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n${"x".repeat(4096)}`);
    });
    try {
      const err = await outcome(upstreamRequest(s.url, base));
      expect(err).to.be.instanceOf(ResponseTooLarge);
      expect((err as Error).message).to.equal("the function's response exceeds 1024 bytes");
    } finally {
      await s.close();
    }
  });

  it("ends with the signal's reason, before the answer and when already aborted", async () => {
    const s = await rawServer(() => undefined);
    try {
      const ac = new AbortController();
      const pending = outcome(upstreamRequest(s.url, { ...base, signal: ac.signal }));
      await new Promise((r) => setTimeout(r, 50));
      ac.abort(new Error("the gateway is stopping"));
      expect(((await pending) as Error).message).to.equal("the gateway is stopping");
      const gone = new AbortController();
      gone.abort(new Error("stopped before"));
      const early = await outcome(upstreamRequest(s.url, { ...base, signal: gone.signal }));
      expect((early as Error).message).to.equal("stopped before");
    } finally {
      await s.close();
    }
  });

  it("times out at the function's timeout with the headers-timeout code", async () => {
    const s = await rawServer(() => undefined);
    try {
      const started = Date.now();
      const err = await outcome(upstreamRequest(s.url, { ...base, answerTimeout: 150 }));
      expect((err as { code?: string }).code).to.equal("UND_ERR_HEADERS_TIMEOUT");
      expect(Date.now() - started).to.be.within(140, 2000);
    } finally {
      await s.close();
    }
  });

  it("reports a refused connection by its code (the function did not run)", async () => {
    const s = await rawServer(() => undefined);
    const url = s.url;
    await s.close();
    const err = await outcome(upstreamRequest(url, base));
    expect((err as { code?: string }).code).to.equal("ECONNREFUSED");
  });
});
