import type { NatsConnection } from "@nats-io/transport-node";
import type { Dispatcher } from "undici";
import { subjects, type FunctionObject, type HttpTrigger, type Lease } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { FakeClock, FakeRegistryBus } from "@fizz/testkit";
import { LeaseManager } from "../src/front-door/leases";
import { RouteStore } from "../src/front-door/routes";

/** The subjects the gateway tests' `FakeRegistryBus` (from `@fizz/testkit`) plays the registry on. */
export const subj = subjects("fizz.v1");

export function fn(name: string): FunctionObject {
  const now = new Date(0).toISOString();
  return {
    apiVersion: "fizz.dev/v1",
    kind: "Function",
    metadata: {
      namespace: "default",
      name,
      uid: `uid-${name}`,
      revision: 1,
      labels: {},
      createdAt: now,
      updatedAt: now,
    },
    spec: {
      environment: "node",
      code: { filename: "f.js", digest: `sha256:${"0".repeat(64)}`, size: 1 },
      minInstances: 0,
      maxInstances: 10,
      timeoutSeconds: 60,
      idleTimeoutSeconds: 120,
    },
  };
}

export function trigger(name: string, path: string, target: string): HttpTrigger {
  const now = new Date(0).toISOString();
  return {
    apiVersion: "fizz.dev/v1",
    kind: "HttpTrigger",
    metadata: {
      namespace: "default",
      name,
      uid: `uid-t-${name}`,
      revision: 1,
      labels: {},
      createdAt: now,
      updatedAt: now,
    },
    spec: { methods: [], path, function: target },
  };
}

/**
 * A route table on a `FakeRegistryBus`, with the lease manager it feeds; its lease requests go to
 * `request` (by default none: a lease request fails). Not started: `store.start(signal)`
 * subscribes, then lists.
 */
export function fakeRouteStore(
  request: () => Promise<Lease> = () => Promise.reject(new Error("no scheduler in this test")),
): {
  nats: FakeRegistryBus;
  leases: LeaseManager;
  store: RouteStore;
} {
  const nats = new FakeRegistryBus(subj);
  const leases = new LeaseManager({
    gateway: "gateway-test",
    dispatcher: () => ({}) as Dispatcher,
    clock: new FakeClock(),
    request,
  });
  const store = new RouteStore({
    nc: nats as unknown as NatsConnection,
    subjects: subj,
    sender: "gateway-test",
    leases,
    logger: silentLogger(),
  });
  return { nats, leases, store };
}
