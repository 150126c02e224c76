import { TimeTrigger } from "@fizz/events";

export interface TimerOpts {
  namespace?: string;
  function?: string;
  revision?: number;
  uid?: string;
  /** ISO time of the last update; default now (no tick before the test is owed). */
  updatedAt?: string;
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  body?: string;
  contentType?: string;
}

/** A TimeTrigger built through the shared schema, so defaults are the ones services see. */
export function timerObj(name: string, cron: string, o: TimerOpts = {}): TimeTrigger {
  const ts = o.updatedAt ?? new Date().toISOString();
  return TimeTrigger.parse({
    apiVersion: "fizz.dev/v1",
    kind: "TimeTrigger",
    metadata: {
      namespace: o.namespace ?? "default",
      name,
      uid: o.uid ?? `uid-timer-${name}`,
      revision: o.revision ?? 1,
      labels: {},
      createdAt: ts,
      updatedAt: ts,
    },
    spec: {
      function: o.function ?? "hello",
      cron,
      ...(o.method ? { method: o.method } : {}),
      ...(o.body !== undefined ? { body: o.body } : {}),
      ...(o.contentType ? { contentType: o.contentType } : {}),
    },
  });
}

export function changedEvent(op: "created" | "updated" | "deleted", obj: TimeTrigger) {
  const { namespace, name, revision } = obj.metadata;
  return { kind: "timetriggers" as const, op, namespace, name, revision, object: obj };
}
