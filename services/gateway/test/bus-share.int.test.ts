import { expect } from "chai";
import { waitFor } from "@fizz/testkit";
import type { Gateway } from "../src/index";
import { reply, startBusWorld, withBody, type BusWorld } from "./bus-harness";
import {
  call,
  closeClients,
  functionObject,
  leaseOf,
  startInstance,
  type Instance,
} from "./harness";

/**
 * Async load cannot starve HTTP traffic: bus calls of a function take at most half of what it can
 * take from the gateway, so an HTTP request finds a free slot while a backlog of async calls runs.
 */
describe("bus share of a function (real NATS JetStream)", function () {
  this.timeout(60_000);
  let w: BusWorld;
  let g: Gateway;
  let inst: Instance;
  let running = 0;
  let maxAsync = 0;
  let httpWhileBusy = 0;

  before(async () => {
    const slow = functionObject("slow");
    slow.spec.maxInstances = 1; // one instance of 4 slots: the bus share is 2
    w = await startBusWorld({ functions: [slow] });
    inst = await startInstance(
      "slow-1",
      withBody((req, _body, res) => {
        if (req.headers["x-fizz-call-id"] === undefined) {
          if (running > 0) httpWhileBusy++;
          return reply(res, 200, "http");
        }
        running++;
        maxAsync = Math.max(maxAsync, running);
        setTimeout(() => {
          running--;
          reply(res, 200, "async");
        }, 400);
      }),
    );
    w.leases.set("slow", () => leaseOf(inst, "slow", { slots: 4, concurrency: 4 }));
    g = await w.startGateway();
  });
  after(async () => {
    closeClients();
    await w?.close();
    await inst?.close();
  });

  it("serves an HTTP request while many async calls to the same function are queued", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await call(g.port, "POST", "/async-function/slow", { body: String(i) });
      expect(r.status).to.equal(202);
      ids.push(r.headers["x-call-id"] as string);
    }
    await waitFor(() => running > 0, { timeoutMs: 10_000, what: "async calls running" });
    const http = await call(g.port, "GET", "/function/slow");
    expect(http.status).to.equal(200);
    expect(http.text).to.equal("http");
    expect(httpWhileBusy).to.equal(1); // served while the backlog was being worked on
    for (const id of ids) {
      await waitFor(
        async () => {
          const s = await call(g.port, "GET", `/async-function/slow/${id}`);
          return s.json<{ state: string }>().state === "succeeded";
        },
        { timeoutMs: 30_000, intervalMs: 100, what: `call ${id}` },
      );
    }
    // Half of the function's 4 slots for the bus; the rest stays for HTTP.
    expect(maxAsync).to.equal(2);
  });
});
