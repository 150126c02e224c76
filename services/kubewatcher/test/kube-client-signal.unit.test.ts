// The kubewatcher's stop signal lives as long as the service and is handed to every apiserver
// request (the reachability probe's GET /version every few seconds, discovery, lists): a request
// must leave nothing on it. AbortSignal.any did on Node 20, a WeakRef per request for good.
import { getEventListeners } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { abortDependants } from "@fizz/testkit";
import { expect } from "chai";
import { KubeClient } from "../src/kube-client";

describe("kube client: the service's stop signal", () => {
  let server: Server;
  let client: KubeClient;
  let hold: Array<() => void> = [];

  before(async () => {
    server = createServer((req, res) => {
      const answer = () => {
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ gitVersion: "v1.35.0" }));
      };
      if (req.url?.startsWith("/slow")) hold.push(answer);
      else answer();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "test", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: "test", token: "t" }],
      contexts: [{ name: "test", cluster: "test", user: "test" }],
      currentContext: "test",
    });
    client = new KubeClient(kc);
  });
  after(() => {
    for (const answer of hold) answer();
    hold = [];
    server.closeAllConnections();
    server.close();
  });

  it("leaves nothing on the stop signal after 200 requests", async () => {
    const stop = new AbortController();
    for (let i = 0; i < 200; i++) await client.get("/version", {}, stop.signal);
    expect(abortDependants(stop.signal)).to.equal(0);
    expect(getEventListeners(stop.signal, "abort")).to.have.length(0);
  });

  it("still aborts a request in flight when the service stops", async () => {
    const stop = new AbortController();
    const pending = client.get("/slow", {}, stop.signal);
    await new Promise((r) => setTimeout(r, 50));
    stop.abort(new Error("stopping"));
    const err = await pending.then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err, "the request was not aborted").to.not.equal(undefined);
  });
});
