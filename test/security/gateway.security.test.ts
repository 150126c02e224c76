import net from "node:net";
import { expect } from "chai";
import { startPlatform, type Platform } from "../e2e/helpers";
import { eventually, fizzOk } from "../e2e/probes";

/**
 * The gateway's edges on the platform `npm start` runs (issue 9, docs/security.md):
 * - the original attack: an async call to a function that echoes its body, with X-Callback-Url
 *   pointed at the registry, made the gateway POST an environment with a host `command` there.
 *   Now refused (400 OUTBOUND_REFUSED) and nothing reaches the registry;
 * - 400 clients trickling request heads do not stop the gateway serving everyone else.
 */
const ECHO = "module.exports = async (ctx) => ctx.request.rawBody.toString();\n";
const EVIL_ENV = JSON.stringify({
  name: "pwn",
  spec: { image: "fizz/env-node", command: ["sh", "-c", "id > /tmp/fizz-pwned"] },
});

describe("security: the gateway's edges", function () {
  this.timeout(120_000);
  let p: Platform;

  before(async () => {
    p = await startPlatform();
    await p.file("echo.js", ECHO);
    await fizzOk(p, "env create --name nodejs --image fizz/env-node");
    await fizzOk(p, "fn create --name echo --env nodejs --code echo.js");
    await eventually(
      "the echo function answers",
      async () => {
        const r = await fetch(`${p.gatewayUrl}/function/echo`, { method: "POST", body: "hi" });
        return r.status === 200 && (await r.text()) === "hi" ? true : undefined;
      },
      60_000,
      250,
    );
  });
  after(async () => {
    await p?.stop();
  });

  const environments = async () => {
    const r = await fetch(`${p.registryUrl}/v1/namespaces/default/environments`, {
      headers: { authorization: `Bearer ${p.adminToken}` },
    });
    expect(r.status).to.equal(200);
    return JSON.stringify(await r.json());
  };

  it("refuses an async call whose callback points at the registry, however it is spelled", async () => {
    const reg = new URL(p.registryUrl);
    const target = "/v1/namespaces/default/environments";
    for (const url of [
      `${p.registryUrl}${target}`,
      `http://localhost:${reg.port}${target}`,
      `http://0x7f.1:${reg.port}${target}`,
      `http://[::ffff:127.0.0.1]:${reg.port}${target}`,
      `http://127.0.0.1:${new URL(p.natsUrl).port}/`,
    ]) {
      const r = await fetch(`${p.gatewayUrl}/async-function/echo`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-callback-url": url },
        body: EVIL_ENV,
      });
      const body = (await r.json()) as { error: { code: string; field: string } };
      expect(r.status, url).to.equal(400);
      expect(body.error).to.include({ code: "OUTBOUND_REFUSED", field: "x-callback-url" });
    }
    // Nothing reached the registry: no environment with a host command exists.
    await new Promise((r) => setTimeout(r, 500));
    expect(await environments()).not.to.contain("pwn");
  });

  it("keeps serving while 400 slow clients hang on to connections", async () => {
    const port = Number(new URL(p.gatewayUrl).port);
    const host = new URL(p.gatewayUrl).hostname;
    const sockets: net.Socket[] = [];
    const timers: NodeJS.Timeout[] = [];
    try {
      for (let i = 0; i < 400; i++) {
        const s = net.connect(port, host);
        s.on("error", () => undefined);
        s.write("POST /function/echo HTTP/1.1\r\nHost: x\r\n");
        // One header byte a second: a slowloris client.
        timers.push(setInterval(() => s.destroyed || s.write("a"), 1000));
        sockets.push(s);
      }
      await eventually(
        "400 slow connections open",
        () => (sockets.every((s) => s.readyState === "open") ? true : undefined),
        10_000,
        50,
      );
      for (let i = 0; i < 5; i++) {
        const r = await fetch(`${p.gatewayUrl}/function/echo`, {
          method: "POST",
          body: `still here ${i}`,
        });
        expect(r.status).to.equal(200);
        expect(await r.text()).to.equal(`still here ${i}`);
      }
    } finally {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
    }
  });
});
