import { expect } from "chai";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Lease } from "@fizz/events";
import { Pool } from "undici";
import { abortDependants } from "@fizz/testkit";
import { callFunction, type CallRequest } from "../src/bus/invoker/invoke";
import { LeaseManager } from "../src/front-door/leases";

/**
 * A bus call and the signal that stops it. The signal is a runner's or consumer's stop signal: it
 * lives as long as the gateway and is handed to every call, so a call must leave nothing on it.
 * AbortSignal.any did (Node 20): each call left a WeakRef in the signal's dependant set, never
 * removed, 30 per second in the soak's mix of trigger and async calls.
 */

function listen(handler: Parameters<typeof createServer>[1]): Promise<Server> {
  const server = createServer(handler);
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

describe("bus call: the stop signal", () => {
  let server: Server;
  let pool: Pool;
  let leases: LeaseManager;
  /** Requests the function got and has not answered (the slow path answers only at close). */
  const held: Array<() => void> = [];

  before(async () => {
    server = await listen((req, res) => {
      if (req.url === "/slow") held.push(() => res.end("late"));
      else res.end("hello");
    });
    const address = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    pool = new Pool(address, { pipelining: 1 });
    const lease: Lease = {
      instanceId: "i-1",
      address,
      function: { namespace: "default", name: "hello", revision: 1 },
      slots: 4,
      concurrency: 4,
      timeoutMs: 5000,
    };
    leases = new LeaseManager({
      gateway: "gateway-test",
      dispatcher: () => pool,
      request: () => Promise.resolve(lease),
    });
  });

  after(async () => {
    for (const answer of held.splice(0)) answer();
    await pool.close();
    await new Promise((resolve) => server.close(resolve));
  });

  const call = (path: string, signal: AbortSignal): CallRequest => ({
    method: "GET",
    path,
    headers: [],
    body: null,
    maxResponseBytes: 1024,
    signal,
  });

  it("leaves nothing on the signal after the calls", async () => {
    const stop = new AbortController();
    const fl = leases.target("default", "hello");
    for (let i = 0; i < 200; i++) {
      const r = await callFunction(leases, fl, call("/", stop.signal));
      expect(r.status).to.equal(200);
    }
    expect(abortDependants(stop.signal)).to.equal(0);
  });

  it("still stops a call in flight when the signal aborts", async () => {
    const stop = new AbortController();
    const fl = leases.target("default", "hello");
    const p = callFunction(leases, fl, call("/slow", stop.signal));
    const outcome = p.then(
      () => "answered",
      (err: { code?: string }) => err.code,
    );
    while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
    stop.abort(new Error("stopping"));
    expect(await outcome).to.equal("UNAVAILABLE");
    held.splice(0).forEach((answer) => answer());
  });
});
