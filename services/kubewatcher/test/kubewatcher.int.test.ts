import { expect } from "chai";
import { Codecs } from "@fizz/events";
import { connectNats, silentLogger } from "@fizz/kit";
import { freePort, startNats, waitFor } from "@fizz/testkit";
import { KubeConfig } from "@kubernetes/client-node";
import { loadConfig, start } from "../src/index";
import { watchTrigger } from "./fixtures";

describe("kubewatcher", () => {
  it("is alive at once, not ready while NATS is away, and ready once it comes", async () => {
    const natsPort = await freePort();
    const kw = await start(loadConfig({ FIZZ_NATS_URL: `nats://127.0.0.1:${natsPort}` }));
    const url = (p: string) => `http://127.0.0.1:${kw.opsPort}${p}`;
    try {
      expect((await fetch(url("/healthz"))).status).to.equal(200);
      const notReady = await fetch(url("/readyz"));
      expect(notReady.status).to.equal(503);
      // No triggers yet, so the apiserver is not asked.
      expect(await notReady.json()).to.deep.include({ checks: { nats: false, kubernetes: true } });
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

  it("without any Kubernetes configured stays ready and marks its triggers failed, saying why", async () => {
    const nats = await startNats();
    const nc = await connectNats({ url: nats.url, name: "test", logger: silentLogger() });
    nc.subscribe("fizz.v1.registry.list", {
      callback: (_e, m) => {
        const items = [watchTrigger("default", "pods", { resource: "pods" })];
        m.respond(Codecs.registryList.reply.encode({ items }, "registry-test"));
      },
    });
    // What client-node falls back to when there is no kubeconfig, no service account.
    const fallback = new KubeConfig();
    fallback.loadFromClusterAndUser(
      { name: "cluster", server: "http://localhost:8080", skipTLSVerify: false },
      { name: "user" },
    );
    const kw = await start(
      loadConfig({ FIZZ_NATS_URL: nats.url, FIZZ_KUBEWATCHER_LEADER_TTL_MS: "1000" }),
      {
        kubeConfig: fallback,
      },
    );
    try {
      await kw.synced;
      await waitFor(() => kw.status()["default/pods"]?.state === "failed", {
        timeoutMs: 10_000,
        what: "failed",
      });
      expect(kw.status()["default/pods"]?.reason).to.match(
        /no Kubernetes configured.*FIZZ_KUBECONFIG/,
      );
      const res = await fetch(`http://127.0.0.1:${kw.opsPort}/readyz`);
      expect(res.status).to.equal(200);
    } finally {
      await kw.stop();
      await nc.close();
      await nats.cleanup();
    }
  });
});
