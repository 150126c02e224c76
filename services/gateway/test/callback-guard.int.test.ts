import http from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { publishInvocation } from "@fizz/kit";
import { jetstream } from "@nats-io/jetstream";
import { waitFor } from "@fizz/testkit";
import type { Gateway } from "../src/index";
import { startBusWorld, type BusWorld } from "./bus-harness";
import {
  call,
  closeClients,
  functionObject,
  leaseOf,
  startInstance,
  subj,
  type Instance,
} from "./harness";

/** A server counting what reaches it; `to` makes it a redirector. */
async function target(host: string, to?: string) {
  const t = {
    url: "",
    port: 0,
    hits: 0,
    close: () => new Promise<void>((r) => srv.close(() => r())),
  };
  const srv = http.createServer((req, res) => {
    t.hits++;
    req.resume();
    if (to !== undefined) res.writeHead(307, { location: to }).end();
    else res.writeHead(201).end("created");
  });
  await new Promise<void>((r) => srv.listen(0, host, r));
  t.port = (srv.address() as AddressInfo).port;
  t.url = `http://${host}:${t.port}/v1/environments`;
  return t;
}

/**
 * X-Callback-Url as an attacker uses it: an async call to an echo function, the callback pointed
 * at the platform, so the gateway POSTs the function's answer (the attacker's body) there. The
 * guard refuses it at the request (400 OUTBOUND_REFUSED naming the header), and again at delivery
 * (DNS may have changed, or the invocation came from the bus), recording why in the call status.
 */
describe("callback URL guard (real NATS JetStream)", function () {
  this.timeout(60_000);
  let w: BusWorld;
  let inst: Instance;
  let strict: Gateway;
  /** What a registry on this host would be: nothing may reach it. */
  let registry: Awaited<ReturnType<typeof target>>;

  before(async () => {
    w = await startBusWorld({ functions: [functionObject("echo")] });
    inst = await startInstance("echo-1");
    w.leases.set("echo", () => leaseOf(inst, "echo"));
    registry = await target("127.0.0.1");
    // No allow-list: the platform default.
    strict = await w.startGateway({ FIZZ_OUTBOUND_ALLOW: "" });
    await strict.ready;
    await strict.busReady;
  });
  after(async () => {
    closeClients();
    await w?.close();
    await inst?.close();
    await registry?.close();
  });

  const attempt = (g: Gateway, url: string) =>
    call(g.port, "POST", "/async-function/echo", {
      body: JSON.stringify({ apiVersion: "fizz.dev/v1", kind: "Environment" }),
      headers: { "x-callback-url": url, "content-type": "application/json" },
    });

  it("refuses a callback to the registry's address, a loopback spelled any way and localhost", async () => {
    const hitsBefore = inst.hits;
    const port = registry.port;
    for (const url of [
      registry.url,
      `http://localhost:${port}/v1/environments`,
      `http://0x7f.1:${port}/`,
      `http://2130706433:${port}/`,
      `http://[::ffff:127.0.0.1]:${port}/`,
      `http://[::1]:${port}/`,
      "http://169.254.169.254/latest/meta-data/",
      "http://10.0.0.1/",
    ]) {
      const r = await attempt(strict, url);
      expect(r.status, url).to.equal(400);
      expect(r.json<{ error: { code: string; field: string } }>().error).to.include({
        code: "OUTBOUND_REFUSED",
        field: "x-callback-url",
      });
    }
    expect(registry.hits).to.equal(0);
    expect(inst.hits).to.equal(hitsBefore); // nothing queued, nothing ran
  });

  it("refuses non-http schemes and malformed callback URLs with VALIDATION_FAILED", async () => {
    for (const url of ["file:///etc/shadow", "gopher://127.0.0.1/", "not a url"]) {
      const r = await attempt(strict, url);
      expect(r.status, url).to.equal(400);
      expect(r.json<{ error: { field: string } }>().error.field).to.equal("x-callback-url");
    }
  });

  it("keeps the platform's own ports refused even when their host is allow-listed", async () => {
    const g = await w.startGateway({
      FIZZ_OUTBOUND_ALLOW: "127.0.0.1",
      FIZZ_REGISTRY_PORT: String(registry.port),
    });
    try {
      await g.ready;
      await g.busReady;
      const r = await attempt(g, registry.url);
      expect(r.status).to.equal(400);
      expect(r.json<{ error: { message: string } }>().error.message).to.match(/platform/);
      // The NATS port (from FIZZ_NATS_URL) too.
      const n = await attempt(g, `http://127.0.0.1:${new URL(w.nats.url).port}/`);
      expect(n.status).to.equal(400);
      expect(registry.hits).to.equal(0);
    } finally {
      await g.stop();
    }
  });

  it("checks an invocation's callback again at delivery: one that skipped the request check is never sent", async () => {
    const js = jetstream(w.nc);
    const callId = `bypass-${Date.now()}`;
    await publishInvocation(
      js,
      subj,
      {
        callId,
        namespace: "default",
        function: "echo",
        source: "async",
        method: "POST",
        path: "/",
        headers: {},
        body: Buffer.from("payload").toString("base64"),
        callbackUrl: registry.url,
        maxRetries: 0,
        createdAt: Date.now(),
      },
      "test",
    );
    let s: Record<string, unknown> = {};
    await waitFor(
      async () => {
        const r = await call(strict.port, "GET", `/async-function/echo/${callId}`);
        s = r.status === 200 ? r.json() : {};
        return s.state === "succeeded";
      },
      { timeoutMs: 15_000, what: "the call to complete" },
    );
    expect(s.callbackError).to.include({ code: "OUTBOUND_REFUSED" });
    expect(registry.hits).to.equal(0);
  });
  it("refuses at delivery a redirect from an allowed host to loopback, and records why", async () => {
    // Gateways share the invoker's durable consumer: only the allow-listing one may take it.
    await strict.stop();
    const bouncer = await target("127.0.0.2", registry.url);
    const g = await w.startGateway({ FIZZ_OUTBOUND_ALLOW: "127.0.0.2" });
    try {
      await g.ready;
      await g.busReady;
      const r = await attempt(g, bouncer.url);
      expect(r.status).to.equal(202);
      const callId = r.headers["x-call-id"] as string;
      let s: Record<string, unknown> = {};
      await waitFor(
        async () => {
          s = (await call(g.port, "GET", `/async-function/echo/${callId}`)).json();
          return s.state === "succeeded";
        },
        { timeoutMs: 15_000, what: "the call to complete" },
      );
      expect(s.callbackError).to.include({ code: "OUTBOUND_REFUSED", field: "x-callback-url" });
      expect(bouncer.hits).to.equal(1);
      expect(registry.hits).to.equal(0);
    } finally {
      await g.stop();
      await bouncer.close();
    }
  });
});
