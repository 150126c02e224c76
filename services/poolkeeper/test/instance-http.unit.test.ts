import { spawn } from "node:child_process";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import net, { connect, type AddressInfo, type Socket } from "node:net";
import { expect } from "chai";
import {
  CONNECT_TIMEOUT_MS,
  instanceAgent,
  instanceRequest,
  InstanceTimeout,
  type InstanceAgent,
} from "../src/instance-http";

/** What a call that must fail failed with (undefined if it did not). */
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: NodeJS.ErrnoException) => e,
  );

describe("instance-http: the poolkeeper's client for its instances", () => {
  let server: Server;
  let address: string;
  let agent: InstanceAgent;
  let handler: (req: IncomingMessage, res: ServerResponse) => void;
  let connections: Socket[];

  beforeEach(async () => {
    connections = [];
    server = createServer((req, res) => handler(req, res));
    server.on("connection", (s) => connections.push(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    address = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    agent = instanceAgent();
  });
  afterEach(async () => {
    agent.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const readAll = async (req: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };

  it("posts a string body with its length and reads the answer", async () => {
    let seen: Record<string, string | undefined> = {};
    handler = (req, res) => {
      void readAll(req).then((b) => {
        seen = {
          method: req.method,
          length: req.headers["content-length"],
          token: req.headers["x-token"] as string,
          body: b.toString(),
        };
        res.end(JSON.stringify({ loadMs: 1.5 }));
      });
    };
    const reply = await instanceRequest(agent, address, "/v2/specialize", {
      method: "POST",
      headers: { "x-token": "t1" },
      body: '{"é":1}',
      timeoutMs: 5000,
      maxReplyBytes: 1024,
    });
    expect(reply).to.deep.equal({ status: 200, text: '{"loadMs":1.5}' });
    expect(seen).to.deep.equal({ method: "POST", length: "8", token: "t1", body: '{"é":1}' });
  });

  it("streams a chunked source whole, under the length it was given", async () => {
    let got = 0;
    handler = (req, res) => void readAll(req).then((b) => res.end(String((got = b.length))));
    const chunk = Buffer.alloc(256 * 1024, 7);
    let asked = 0;
    async function* body() {
      for (let i = 0; i < 40; i++) {
        asked++;
        yield await Promise.resolve(chunk);
      }
    }
    const reply = await instanceRequest(agent, address, "/x", {
      method: "POST",
      headers: { "content-length": String(40 * chunk.length) },
      body: body(),
      timeoutMs: 10_000,
      maxReplyBytes: 1024,
    });
    expect(reply.status).to.equal(200);
    expect(got).to.equal(40 * chunk.length);
    expect(asked).to.equal(40);
  });

  it("reuses the probe's connection for the next request", async () => {
    handler = (_req, res) => res.end("ok");
    for (let i = 0; i < 3; i++) {
      const r = await instanceRequest(agent, address, "/healthz", {
        method: "GET",
        timeoutMs: 5000,
        maxReplyBytes: 64,
      });
      expect(r.status).to.equal(200);
    }
    expect(connections).to.have.length(1);
  });

  it("lets a request outlast the idle timeout, and closes the connection once idle", async () => {
    handler = (_req, res) => setTimeout(() => res.end("loaded"), 300);
    const short = instanceAgent(100);
    try {
      const reply = await instanceRequest(short, address, "/v2/specialize", {
        method: "POST",
        body: "{}",
        timeoutMs: 5000,
        maxReplyBytes: 64,
      });
      expect(reply).to.deep.equal({ status: 200, text: "loaded" });
      expect(connections[0]?.destroyed).to.equal(false);
      await new Promise((r) => setTimeout(r, 400));
      expect(connections[0]?.destroyed).to.equal(true);
    } finally {
      short.destroy();
    }
  });

  it("fails an answer over its cap instead of holding it", async () => {
    handler = (_req, res) => {
      res.writeHead(200);
      const big = Buffer.alloc(64 * 1024, 1);
      for (let i = 0; i < 64; i++) res.write(big);
      res.end();
    };
    const err = await failure(
      instanceRequest(agent, address, "/v2/specialize", {
        method: "POST",
        body: "{}",
        timeoutMs: 5000,
        maxReplyBytes: 256 * 1024,
      }),
    );
    expect(err?.message).to.equal("the instance's answer is over 262144 bytes");
  });

  it("times out an instance that never answers, and closes the connection", async () => {
    handler = () => undefined;
    const started = Date.now();
    const err = await failure(
      instanceRequest(agent, address, "/v2/specialize", {
        method: "POST",
        body: "{}",
        timeoutMs: 150,
        maxReplyBytes: 1024,
      }),
    );
    expect(err).to.be.instanceOf(InstanceTimeout);
    expect(err?.message).to.equal("no answer within 150 ms");
    expect(Date.now() - started).to.be.below(2000);
    await new Promise((r) => setTimeout(r, 50));
    expect(connections[0]?.destroyed).to.equal(true);
  });

  it("times out an answer whose body never ends", async () => {
    handler = (_req, res) => {
      res.writeHead(200, { "content-length": "10" });
      res.write("12345");
    };
    const err = await failure(
      instanceRequest(agent, address, "/healthz", {
        method: "GET",
        timeoutMs: 150,
        maxReplyBytes: 1024,
      }),
    );
    expect(err).to.be.instanceOf(InstanceTimeout);
  });

  it("rejects with the source's own error when the body stream fails", async () => {
    handler = (req, res) =>
      void readAll(req).then(
        () => res.end("late"),
        () => undefined,
      );
    async function* body() {
      yield Buffer.from("part");
      await new Promise((r) => setTimeout(r, 20));
      throw new Error("store read failed");
    }
    const err = await failure(
      instanceRequest(agent, address, "/v2/specialize", {
        method: "POST",
        headers: { "content-length": "100" },
        body: body(),
        timeoutMs: 5000,
        maxReplyBytes: 1024,
      }),
    );
    expect(err?.message).to.equal("store read failed");
  });

  it("takes an answer given before the body was read, and stops sending the rest", async () => {
    handler = (req, res) => {
      req.once("data", () => {
        res.writeHead(413, { connection: "close" });
        res.end('{"error":{"code":"TOO_LARGE"}}');
      });
    };
    let stopped = false;
    let sent = 0;
    async function* body() {
      try {
        for (;;) {
          sent++;
          yield Buffer.alloc(64 * 1024);
          await new Promise((r) => setImmediate(r));
        }
      } finally {
        stopped = true;
      }
    }
    const reply = await instanceRequest(agent, address, "/v2/specialize", {
      method: "POST",
      headers: { "content-length": String(1024 * 1024 * 1024) },
      body: body(),
      timeoutMs: 5000,
      maxReplyBytes: 1024,
    });
    expect(reply.status).to.equal(413);
    await new Promise((r) => setTimeout(r, 100));
    expect(stopped).to.equal(true);
    expect(sent).to.be.below(16_384);
  });

  it("rejects when the instance closes the connection mid-answer", async () => {
    handler = (req, res) => {
      res.writeHead(200, { "content-length": "100" });
      res.write("partial");
      setTimeout(() => req.socket.destroy(), 20);
    };
    const err = await failure(
      instanceRequest(agent, address, "/v2/specialize", {
        method: "POST",
        body: "{}",
        timeoutMs: 5000,
        maxReplyBytes: 1024,
      }),
    );
    expect(err).to.be.instanceOf(Error);
    expect(err).not.to.be.instanceOf(InstanceTimeout);
  });

  it("rejects a refused connection", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const err = await failure(
      instanceRequest(agent, `http://127.0.0.1:${port}`, "/healthz", {
        method: "GET",
        timeoutMs: 5000,
        maxReplyBytes: 64,
      }),
    );
    expect(err?.code).to.equal("ECONNREFUSED");
  });

  it("refuses an address that is not plain http, sending nothing", async () => {
    handler = (_req, res) => res.end("ok");
    const port = (server.address() as AddressInfo).port;
    for (const bad of [`https://127.0.0.1:${port}`, `file:///etc/passwd`]) {
      const err = await failure(
        instanceRequest(agent, bad, "/healthz", {
          method: "GET",
          timeoutMs: 1000,
          maxReplyBytes: 64,
        }),
      );
      expect(err?.message).to.match(/is not http:\/\//);
    }
    expect(connections).to.have.length(0);
  });

  it("rejects a header value that cannot be sent, before connecting", async () => {
    handler = (_req, res) => res.end("ok");
    const err = await failure(
      instanceRequest(agent, address, "/v2/specialize", {
        method: "POST",
        headers: { "x-token": "a\r\nx-injected: 1" },
        body: "{}",
        timeoutMs: 1000,
        maxReplyBytes: 64,
      }),
    );
    expect(err?.code).to.equal("ERR_INVALID_CHAR");
    await new Promise((r) => setTimeout(r, 50));
    expect(connections).to.have.length(0);
  });
});

describe("instance-http: what the poolkeeper does not let an instance or a caller do", () => {
  it("never sends a streamed body past its content-length, nor short of it", async () => {
    const received: Buffer[] = [];
    const server = net.createServer((s) => {
      s.on("data", (d: Buffer) => received.push(d));
      s.on("error", () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const address = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const agent = instanceAgent();
    async function* body(parts: string[]) {
      for (const p of parts) yield await Promise.resolve(Buffer.from(p));
    }
    try {
      const long = await failure(
        instanceRequest(agent, address, "/v2/specialize", {
          method: "POST",
          headers: { "content-length": "4" },
          body: body(["abcd", "GET /smuggled HTTP/1.1\r\n\r\n"]),
          timeoutMs: 2000,
          maxReplyBytes: 64,
        }),
      );
      expect(long?.message).to.equal("the body is longer than its content-length of 4");
      const short = await failure(
        instanceRequest(agent, address, "/v2/specialize", {
          method: "POST",
          headers: { "content-length": "10" },
          body: body(["abc"]),
          timeoutMs: 2000,
          maxReplyBytes: 64,
        }),
      );
      expect(short?.message).to.equal("the body is shorter than its content-length of 10");
      await new Promise((r) => setTimeout(r, 50));
      expect(Buffer.concat(received).toString("latin1")).not.to.include("smuggled");
    } finally {
      agent.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  it("closes the specialize's connection after the answer instead of keeping it", async () => {
    const sockets: Socket[] = [];
    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () => res.end("{}"));
    });
    server.on("connection", (s) => sockets.push(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const address = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const agent = instanceAgent();
    try {
      await instanceRequest(agent, address, "/v2/specialize", {
        method: "POST",
        body: "{}",
        timeoutMs: 2000,
        maxReplyBytes: 64,
        keepAlive: false,
      });
      await new Promise((r) => setTimeout(r, 50));
      expect(sockets).to.have.length(1);
      expect(sockets[0]?.destroyed).to.equal(true);
      expect(Object.keys(agent.freeSockets)).to.have.length(0);
    } finally {
      agent.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it("gives up on a connection that does not open within the connect timeout, long before the request's", async () => {
    // A listener that never accepts, its queue filled: the next connect stays in SYN-SENT.
    const py = spawn(
      "python3",
      [
        "-c",
        "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\n" +
          "print(s.getsockname()[1],flush=True)\ntime.sleep(60)",
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const fillers: Socket[] = [];
    const agent = instanceAgent();
    try {
      const port = await new Promise<number>((r) =>
        py.stdout.once("data", (d: Buffer) => r(Number(d.toString().trim()))),
      );
      for (let i = 0; i < 4; i++) {
        const s = connect(port, "127.0.0.1");
        s.on("error", () => undefined);
        fillers.push(s);
      }
      await new Promise((r) => setTimeout(r, 200));
      const started = Date.now();
      const err = await failure(
        instanceRequest(agent, `http://127.0.0.1:${port}`, "/healthz", {
          method: "GET",
          timeoutMs: 20_000,
          maxReplyBytes: 64,
        }),
      );
      expect(err?.message).to.equal(`could not connect within ${CONNECT_TIMEOUT_MS} ms`);
      expect(Date.now() - started).to.be.within(
        CONNECT_TIMEOUT_MS - 100,
        CONNECT_TIMEOUT_MS + 2000,
      );
    } finally {
      for (const s of fillers) s.destroy();
      agent.destroy();
      py.kill();
    }
  });
});
