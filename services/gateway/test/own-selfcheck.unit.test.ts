import http from "node:http";
import net from "node:net";
import { Writable } from "node:stream";
import { expect } from "chai";
import { createLogger } from "@fizz/kit";
import { requestParser, type RequestEvents } from "../src/front-door/own-parser";
import { listenOwn } from "../src/front-door/own-server";
import { ownSelfCheck, type ParserFactory } from "../src/front-door/own-selfcheck";
import { listenProxy, type ProxyServer, type ServerLimits } from "../src/front-door/server";

const limits: ServerLimits = {
  maxConnections: 100,
  headersTimeoutMs: 2000,
  requestTimeoutMs: 5000,
  keepAliveTimeoutMs: 5000,
  frontend: "own",
};

/** A logger whose lines the test reads. */
function capture(): { logger: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createLogger("gateway", "info", sink), lines };
}

/** The raw head of one answer, to tell the two servers apart (node's writes `Keep-Alive`). */
function rawHead(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    let all = "";
    s.on("data", (d: Buffer) => {
      all += d.toString("latin1");
      const end = all.indexOf("\r\n\r\n");
      if (end >= 0) {
        s.destroy();
        resolve(all.slice(0, end));
      }
    });
    s.on("error", reject);
  });
}

/** Whether something accepts connections on the port. */
function probe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

const hello: http.RequestListener = (_req, res) => {
  res.writeHead(200, { "content-length": "2" });
  res.end("hi");
};

/** The real parser, with the events it reports altered by `alter`. */
function altered(alter: (ev: RequestEvents) => RequestEvents): ParserFactory {
  return (socket, ev) => requestParser(socket, alter(ev));
}

describe("own front end start-up self-check (loopback, Node's parser)", function () {
  this.timeout(20_000);

  it("passes on this Node, within the 1 s budget", async () => {
    const r = await ownSelfCheck();
    expect(r, JSON.stringify(r)).to.include({ ok: true });
    expect(r.ms).to.be.below(1000);
  });

  it("fails naming the body when the parser loses a body chunk", async () => {
    let dropped = false;
    const r = await ownSelfCheck({
      parser: altered((ev) => ({
        ...ev,
        onBody: (b) => {
          if (!dropped) dropped = true;
          else ev.onBody(b);
        },
      })),
    });
    expect(r.ok).to.equal(false);
    expect(!r.ok && r.failed).to.equal('parser: request 2 body: got " world", want "hello world"');
  });

  it("fails when the parser reports a wrong URL", async () => {
    const r = await ownSelfCheck({
      parser: altered((ev) => ({ ...ev, onHead: (h) => ev.onHead({ ...h, url: h.url + "x" }) })),
    });
    expect(!r.ok && r.failed).to.equal(
      'parser: request 1 url: got "/a?x=1&y=%20x", want "/a?x=1&y=%20"',
    );
  });

  it("fails when stopping the socket's reading does not stop it", async () => {
    const r = await ownSelfCheck({
      parser: (socket, ev) => ({ ...requestParser(socket, ev), read: () => undefined }),
    });
    expect(!r.ok && r.failed).to.equal("parser: read stopped, yet 3 requests were parsed");
  });

  it("fails when making the parser throws", async () => {
    const r = await ownSelfCheck({
      parser: () => {
        throw new Error("no HTTPParser here");
      },
    });
    expect(!r.ok && r.failed).to.equal("parser: no HTTPParser here");
  });

  it("gives up within its time limit when the parser never calls back", async () => {
    const r = await ownSelfCheck({
      parser: altered((ev) => ({ ...ev, onMessageComplete: () => undefined })),
      timeoutMs: 200,
    });
    expect(!r.ok && r.failed).to.equal("parser: no outcome within 200 ms");
    expect(r.ms).to.be.within(190, 400);
  });

  it("leaves no server listening when its server starts only after the time limit", async () => {
    // A step that finishes late (a loaded machine): what it opens after the check gave up and
    // cleaned up must be closed too, or the gateway keeps a stray listening port.
    const servers: ProxyServer[] = [];
    const r = await ownSelfCheck({
      timeoutMs: 150,
      listen: async (...args) => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        const server = await listenOwn(...args);
        servers.push(server);
        return server;
      },
    });
    expect(!r.ok && r.failed).to.equal("server: no outcome within 150 ms");
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(servers).to.have.length(1);
    const open = await Promise.all(servers.map((s) => probe(s.port)));
    await Promise.all(servers.map((s) => s.drain(0)));
    expect(open, "the self-check's server still accepts connections").to.deep.equal([false]);
  });

  it("fails naming the answers when the own server answers a request with another's", async () => {
    const r = await ownSelfCheck({
      listen: (handler, ...rest) =>
        listenOwn(
          (req, res) => (req.url === "/p1" ? void res.end("GET /p4 4 ") : handler(req, res)),
          ...rest,
        ),
    });
    expect(!r.ok && r.failed).to.match(/^server: answers: got \["200 GET \/p4 4 ",/);
  });

  it("the gateway serves on its own front end when the check passes", async () => {
    const { logger, lines } = capture();
    const server = await listenProxy(hello, "127.0.0.1", 0, { count: 0 }, limits, { logger });
    try {
      expect(await rawHead(server.port)).to.include("\r\nconnection: keep-alive\r\n");
      expect(lines.filter((l) => l.level === 40)).to.deep.equal([]);
    } finally {
      await server.drain(0);
    }
  });

  it("the gateway falls back to node's http server with a warning when the check fails", async () => {
    const { logger, lines } = capture();
    const broken: ParserFactory = altered((ev) => ({ ...ev, onBody: () => undefined }));
    const server = await listenProxy(hello, "127.0.0.1", 0, { count: 0 }, limits, {
      logger,
      selfCheck: () => ownSelfCheck({ parser: broken }),
    });
    try {
      // node's http server writes its Connection and Keep-Alive headers capitalized.
      expect(await rawHead(server.port)).to.include("\r\nConnection: keep-alive\r\nKeep-Alive:");
      const warn = lines.filter((l) => l.level === 40);
      expect(warn).to.have.length(1);
      expect(warn[0]?.msg).to.match(/failed its start-up self-check.*node's http server/);
      expect(warn[0]?.failed).to.equal('parser: request 2 body: got "", want "hello world"');
    } finally {
      await server.drain(0);
    }
  });
});
