import type { WatchTrigger, WatchTriggerSpec } from "@fizz/events";

let uidCounter = 0;

/** A watch trigger as the registry stores it (defaults applied). */
export function watchTrigger(
  namespace: string,
  name: string,
  spec: Partial<WatchTriggerSpec> & { resource: string },
  revision = 1,
): WatchTrigger {
  return {
    apiVersion: "fizz.dev/v1",
    kind: "WatchTrigger",
    metadata: {
      namespace,
      name,
      uid: `uid-${name}-${++uidCounter}`,
      revision,
      labels: {},
      createdAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
    },
    spec: {
      function: "handler",
      namespace,
      events: ["ADDED", "MODIFIED", "DELETED"],
      ...spec,
    },
  };
}
