import { subjects, type FunctionObject, type HttpTrigger } from "@fizz/events";

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
