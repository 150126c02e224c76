import net from "node:net";
import { expect } from "chai";
import { waitFor } from "@fizz/testkit";
import {
  call,
  closeClients,
  functionObject,
  leaseOf,
  startHarness,
  startInstance,
  type Harness,
  type Instance,
} from "./harness";

/** A client that opens a request and sends one header byte per `everyMs`, never finishing. */
function slowClient(port: number, everyMs: number): { socket: net.Socket; closed: Promise<void> } {
  const socket = net.connect(port, "127.0.0.1");
  const head = "GET /function/echo HTTP/1.1\r\nHost: x\r\nX-Slow: " + "a".repeat(10_000);
  let i = 0;
  const t = setInterval(() => {
    if (!socket.destroyed) socket.write(head[i++ % head.length] as string);
  }, everyMs);
  socket.on("error", () => undefined);
  const closed = new Promise<void>((resolve) =>
    socket.on("close", () => {
      clearInterval(t);
      resolve();
    }),
  );
  return { socket, closed };
}

/**
 * Clients that hold connections open and trickle bytes (slowloris) must neither keep a socket
 * forever nor starve other clients.
 */
describe("gateway input limits (real NATS)", function () {
  this.timeout(60_000);
  let h: Harness;
  let inst: Instance;

  before(async () => {
    h = await startHarness({
      functions: [functionObject("echo")],
      triggers: [],
      env: {
        FIZZ_GATEWAY_HEADERS_TIMEOUT_MS: "1500",
        FIZZ_GATEWAY_MAX_CONNECTIONS: "1000",
        FIZZ_GATEWAY_BODY_IDLE_TIMEOUT_MS: "1000",
      },
    });
    inst = await startInstance("echo-1");
    h.leases.set("echo", () => leaseOf(inst, "echo"));
  });
  after(async () => {
    closeClients();
    await h?.close();
    await inst?.close();
  });

  it("closes a connection whose request head does not arrive within the headers timeout", async () => {
    const c = slowClient(h.gateway.port, 200);
    const t0 = Date.now();
    await waitFor(() => c.socket.destroyed, { timeoutMs: 10_000, what: "the slow socket closed" });
    await c.closed;
    // Trickling bytes does not extend it: closed around 1.5 s, not never.
    expect(Date.now() - t0).to.be.within(1000, 6000);
  });

  it("cuts off a request body that stalls past the body idle timeout", async () => {
    const socket = net.connect(h.gateway.port, "127.0.0.1");
    socket.on("error", () => undefined);
    let answer = "";
    socket.on("data", (d: Buffer) => (answer += d.toString()));
    const closed = new Promise<void>((r) => socket.on("close", () => r()));
    const t0 = Date.now();
    socket.write(
      "POST /function/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
    );
    await closed;
    expect(Date.now() - t0).to.be.within(900, 8000);
    expect(answer).not.to.match(/^HTTP\/1\.1 200/);
  });

  it("lets a slow but steady body through: only silence counts", async () => {
    const socket = net.connect(h.gateway.port, "127.0.0.1");
    socket.on("error", () => undefined);
    let answer = "";
    socket.on("data", (d: Buffer) => (answer += d.toString()));
    socket.write("POST /function/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n");
    // 8 bytes over ~2.4 s, each gap below the 1 s idle limit.
    for (const c of "abcdefgh") {
      await new Promise((r) => setTimeout(r, 300));
      socket.write(c);
    }
    await waitFor(() => /\r\n\r\n[\s\S]*abcdefgh/.test(answer), {
      timeoutMs: 5000,
      what: "the echoed body",
    });
    expect(answer).to.match(/^HTTP\/1\.1 200/);
    socket.destroy();
  });

  it("keeps serving other clients normally while 400 slow clients hang", async () => {
    const slow = Array.from({ length: 400 }, () => slowClient(h.gateway.port, 1000));
    try {
      await waitFor(() => slow.every((c) => c.socket.readyState === "open"), {
        timeoutMs: 10_000,
        what: "400 slow connections open",
      });
      for (let i = 0; i < 5; i++) {
        const t0 = Date.now();
        const r = await call(h.gateway.port, "POST", "/function/echo", { body: `ok ${i}` });
        expect(r.status).to.equal(200);
        expect(Date.now() - t0).to.be.below(2000);
      }
    } finally {
      for (const c of slow) c.socket.destroy();
    }
  });

  it("refuses connections beyond FIZZ_GATEWAY_MAX_CONNECTIONS and serves again once they go", async () => {
    const g = await startHarness({
      functions: [functionObject("echo")],
      triggers: [],
      env: { FIZZ_GATEWAY_MAX_CONNECTIONS: "20" },
    });
    g.leases.set("echo", () => leaseOf(inst, "echo"));
    const held = Array.from({ length: 20 }, () => slowClient(g.gateway.port, 1000));
    try {
      await waitFor(() => held.every((c) => c.socket.readyState === "open"), {
        timeoutMs: 10_000,
        what: "20 connections open",
      });
      const extra = slowClient(g.gateway.port, 1000);
      await waitFor(() => extra.socket.destroyed, { timeoutMs: 5000, what: "the 21st refused" });
      for (const c of held) c.socket.destroy();
      await waitFor(
        async () =>
          (await call(g.gateway.port, "GET", "/function/echo").catch(() => null))?.status === 200,
        { timeoutMs: 5000, what: "serving again" },
      );
    } finally {
      for (const c of held) c.socket.destroy();
      await g.close();
    }
  });
});
