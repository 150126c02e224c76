import { expect } from "chai";
import { freePort, startNats, waitFor } from "@fizz/testkit";
import { loadConfig, start } from "../src/index";

describe("kubewatcher", () => {
  it("is alive at once, not ready while NATS is away, and ready once it comes", async () => {
    const natsPort = await freePort();
    const kw = await start(loadConfig({ FIZZ_NATS_URL: `nats://127.0.0.1:${natsPort}` }));
    const url = (p: string) => `http://127.0.0.1:${kw.opsPort}${p}`;
    try {
      expect((await fetch(url("/healthz"))).status).to.equal(200);
      const notReady = await fetch(url("/readyz"));
      expect(notReady.status).to.equal(503);
      expect(await notReady.json()).to.deep.include({ checks: { nats: false } });
      const nats = await startNats({ port: natsPort });
      try {
        await waitFor(async () => (await fetch(url("/readyz"))).status === 200, {
          timeoutMs: 15_000,
          what: "ready",
        });
      } finally {
        await kw.stop();
        await nats.cleanup();
      }
    } catch (err) {
      await kw.stop();
      throw err;
    }
  });

  it("serves Prometheus metrics", async () => {
    const kw = await start(loadConfig({ FIZZ_NATS_URL: `nats://127.0.0.1:${await freePort()}` }));
    try {
      const text = await (await fetch(`http://127.0.0.1:${kw.opsPort}/metrics`)).text();
      expect(text).to.match(/process_cpu_user_seconds_total\{service="kubewatcher"\}/);
    } finally {
      await kw.stop();
    }
  });

  it("refuses a bad port setting, naming the variable", () => {
    expect(() => loadConfig({ FIZZ_KUBEWATCHER_PORT: "http" })).to.throw(/FIZZ_KUBEWATCHER_PORT/);
    expect(() => loadConfig({ FIZZ_NATS_URL: "http://x" })).to.throw(/FIZZ_NATS_URL/);
  });
});
