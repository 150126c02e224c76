import { getHeapStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { expect } from "chai";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Dispatcher } from "undici";
import type { AnyObject } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { FakeClock, FakeRegistryBus } from "@fizz/testkit";
import { LeaseManager } from "../src/front-door/leases";
import { RouteStore } from "../src/front-door/routes";
import { fn, subj, trigger } from "./routes-fakes";

/**
 * What the gateway's heap holds per registered function (the scale bench: 10,000 functions, each
 * with an HTTP trigger, all in one gateway). It held the decoded registry objects whole, an
 * eager Set and queue array per function's lease state, a closure per trigger route and two maps
 * and a set of route bookkeeping: 3.1 KB per function here (47-54 MB of heap at 10,000 in the
 * bench, against 15-22 MB for one route, and more GC work under load); 1.24 KB since. Heap use is counted after full collections, so the
 * figure does not depend on the machine's speed or load.
 */
const N = 4000;

/** V8's gc(), without --expose-gc on the command line. */
function collector(): () => void {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

function heapUsed(gc: () => void): number {
  for (let i = 0; i < 4; i++) gc();
  return getHeapStatistics().used_heap_size;
}

async function tableOf(n: number): Promise<{ store: RouteStore; leases: LeaseManager }> {
  const nats = new FakeRegistryBus(subj);
  const leases = new LeaseManager({
    gateway: "gateway-test",
    dispatcher: () => ({}) as Dispatcher,
    clock: new FakeClock(),
    request: () => Promise.reject(new Error("no scheduler in this test")),
  });
  const store = new RouteStore({
    nc: nats as unknown as NatsConnection,
    subjects: subj,
    sender: "gateway-test",
    leases,
    logger: silentLogger(),
  });
  const loading = store.start(new AbortController().signal);
  // Listed as at a restart (the objects travel encoded and are decoded, as from the registry).
  await listAll(nats, n);
  await loading;
  return { store, leases };
}

/** A function of its own: its arrays are garbage once it returns. */
async function listAll(nats: FakeRegistryBus, n: number): Promise<void> {
  const fns: AnyObject[] = [];
  const trs: AnyObject[] = [];
  for (let i = 0; i < n; i++) {
    const f = fn(`s-${i}`);
    f.metadata.uid = `5d0c1a2e-0000-4000-8000-${String(i).padStart(12, "0")}`;
    f.metadata.createdAt = new Date(1_700_000_000_000 + i).toISOString();
    fns.push(f);
    const t = trigger(`s-${i}`, `/s/${i}`, `s-${i}`);
    t.metadata.uid = `7e1d2b3f-0000-4000-8000-${String(i).padStart(12, "0")}`;
    trs.push(t);
  }
  await nats.list("functions", fns);
  await nats.list("httptriggers", trs);
}

describe("route table memory per function", () => {
  it(`holds under 1,600 bytes of heap per function with its trigger (${N} of each)`, async () => {
    const gc = collector();
    // Warm up: code compiled and object shapes made are not per function.
    const warm = await tableOf(50);
    const before = heapUsed(gc);
    const { store, leases } = await tableOf(N);
    const perFunction = (heapUsed(gc) - before) / N;
    // Still all there: every route answers, every function has its lease state.
    expect(store.router?.match("GET", undefined, `/s/${N - 1}`)?.trigger).to.equal(
      `default/s-${N - 1}`,
    );
    expect(store.router?.match("GET", undefined, `/function/s-0`)?.target).to.equal(
      leases.get("default", "s-0"),
    );
    expect([...leases.all()].length).to.equal(N);
    expect(warm.store.loaded).to.equal(true);
    // 3,000 per function before: the registry objects whole, eager lease state, closures.
    expect(perFunction, `heap bytes per function`).to.be.below(1600);
  });
});
