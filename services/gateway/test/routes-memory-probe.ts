/**
 * The measurement of routes-memory.unit, run in a process of its own (`node --expose-gc`): heap
 * use is the whole process's, and in the unit stage's single mocha process whatever other tests
 * leave running (a timer, a retry loop, a listing still in flight, V8 finishing their optimized
 * code) would count as the route table's. Prints one JSON line.
 */
import { getHeapStatistics } from "node:v8";
import type { AnyObject } from "@fizz/events";
import { FakeRegistryBus } from "@fizz/testkit";
import { LeaseManager } from "../src/front-door/leases";
import { RouteStore } from "../src/front-door/routes";
import { fakeRouteStore, fn, trigger } from "./routes-fakes";

export interface MemoryProbe {
  perFunction: number;
  /** What the last trigger's route and the first function's route answer (all still there). */
  lastTrigger: string | undefined;
  functionRouteIsState: boolean;
  states: number;
  warmLoaded: boolean;
}

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --expose-gc");

function heapUsed(): number {
  for (let i = 0; i < 4; i++) gc!();
  return getHeapStatistics().used_heap_size;
}

async function tableOf(n: number): Promise<{ store: RouteStore; leases: LeaseManager }> {
  const { nats, leases, store } = fakeRouteStore();
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

const n = Number(process.argv[2]);
// Warm up: code compiled and object shapes made are not per function.
const warm = await tableOf(50);
const before = heapUsed();
const { store, leases } = await tableOf(n);
const perFunction = (heapUsed() - before) / n;
const probe: MemoryProbe = {
  perFunction,
  lastTrigger: store.router?.match("GET", undefined, `/s/${n - 1}`)?.trigger,
  functionRouteIsState:
    store.router?.match("GET", undefined, `/function/s-0`)?.target === leases.get("default", "s-0"),
  states: [...leases.all()].length,
  warmLoaded: warm.store.loaded,
};
process.stdout.write(`${JSON.stringify(probe)}\n`);
process.exit(0);
