// X-Forwarded-Host/-Proto and Forwarded reach a function only from a trusted proxy
// (FIZZ_TRUSTED_PROXIES); from anyone else the gateway sets them from the connection it accepted,
// so a client cannot choose the host a function builds its links with. Real gateway, real NATS;
// the trusted proxy is a client bound to 127.0.0.2, the untrusted one 127.0.0.1.
import http from "node:http";
import { expect } from "chai";
import type { Runtime } from "../../../runtimes/contract/harness.js";
import { push } from "../../../runtimes/contract/runtime-contract.js";
import { nodeRuntime } from "../../../runtimes/node/test/fixtures.js";
import {
  closeClients,
  functionObject,
  leaseOf,
  startHarness,
  startInstance,
  triggerObject,
  type Harness,
  type Instance,
} from "./harness";

const PROXY = "127.0.0.2";
const FORGED = {
  "x-forwarded-host": "evil.example",
  "x-forwarded-proto": "https",
  "x-forwarded-for": "203.0.113.7",
  forwarded: "for=203.0.113.7;host=evil.example;proto=https",
};

/** Express-style: what a Fission function reads to build an absolute link. */
const WHOAMI = {
  filename: "whoami.js",
  source: `module.exports = async (context) => {
  const r = context.request;
  return { hostname: r.hostname, protocol: r.protocol, secure: r.secure, ip: r.ip };
};
`,
};

interface Seen {
  headers: Record<string, string>;
}

/** One request from `from` (a loopback address) with the Host `host`. */
function send(
  port: number,
  path: string,
  from: string,
  headers: http.OutgoingHttpHeaders,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path, localAddress: from, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>,
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("gateway: forwarding headers only from trusted proxies (real NATS)", function () {
  this.timeout(30_000);
  let h: Harness;
  let echo: Instance;
  let rt: Runtime;

  before(async () => {
    h = await startHarness({
      functions: [functionObject("echo"), functionObject("hello", "default", 3)],
      triggers: [
        triggerObject("echo", { function: "echo", prefix: "/echo" }),
        triggerObject("whoami", { function: "hello", path: "/whoami" }),
      ],
      env: { FIZZ_TRUSTED_PROXIES: `${PROXY}, 10.0.0.0/8` },
    });
    echo = await startInstance("echo-1");
    h.leases.set("echo", () => leaseOf(echo, "echo"));
    rt = await nodeRuntime.start({ FIZZ_INSTANCE_ID: "rt-1" });
    const pushed = await push(rt, WHOAMI);
    expect(pushed.status, pushed.text).to.equal(200);
    h.leases.set("hello", () => leaseOf({ id: "rt-1", address: rt.url }, "hello", { revision: 3 }));
  });

  after(async () => {
    closeClients();
    await h?.close();
    await echo?.close();
    await rt?.kill();
  });

  it("replaces a client's X-Forwarded-Host/-Proto with its Host and scheme, drops Forwarded, and appends to X-Forwarded-For", async () => {
    const res = await send(h.gateway.port, "/echo", "127.0.0.1", {
      host: "shop.example:8080",
      ...FORGED,
    });
    expect(res.status).to.equal(200);
    const seen = (res.body as unknown as Seen).headers;
    expect(seen).to.include({
      "x-forwarded-host": "shop.example:8080",
      "x-forwarded-proto": "http",
      "x-forwarded-for": "203.0.113.7, 127.0.0.1",
    });
    expect(seen).not.to.have.property("forwarded");
  });

  it("gives a Node function the real Host and scheme when a client forges them", async () => {
    const res = await send(h.gateway.port, "/whoami", "127.0.0.1", {
      host: "shop.example",
      ...FORGED,
    });
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({
      hostname: "shop.example",
      protocol: "http",
      secure: false,
      ip: "127.0.0.1",
    });
  });

  it("keeps X-Forwarded-Host/-Proto and Forwarded from a trusted proxy", async () => {
    const res = await send(h.gateway.port, "/echo", PROXY, {
      host: "gateway.internal",
      ...FORGED,
    });
    const seen = (res.body as unknown as Seen).headers;
    expect(seen).to.include({
      "x-forwarded-host": "evil.example",
      "x-forwarded-proto": "https",
      "x-forwarded-for": `203.0.113.7, ${PROXY}`,
      forwarded: FORGED.forwarded,
    });
    const whoami = await send(h.gateway.port, "/whoami", PROXY, {
      host: "gateway.internal",
      "x-forwarded-host": "shop.example",
      "x-forwarded-proto": "https",
    });
    expect(whoami.body).to.deep.include({ hostname: "shop.example", protocol: "https" });
  });

  it("sets the Host and scheme itself when a trusted proxy sends none", async () => {
    const res = await send(h.gateway.port, "/echo", PROXY, { host: "gateway.internal" });
    expect((res.body as unknown as Seen).headers).to.include({
      "x-forwarded-host": "gateway.internal",
      "x-forwarded-proto": "http",
      "x-forwarded-for": PROXY,
    });
  });
});
