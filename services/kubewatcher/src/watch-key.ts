import { createHash } from "node:crypto";
import type { WatchTrigger, WatchTriggerSpec } from "@fizz/events";

/**
 * What an informer watches. Triggers with equal keys share one informer (one list+watch against
 * the apiserver) and one resume point. The key is taken from the spec as written (not resolved
 * through discovery), so it is known even for a trigger whose resource cannot be resolved, and
 * the state of keys no trigger uses can be found and forgotten.
 */
export interface WatchKey {
  resource: string;
  namespace: string;
  labels: string;
  fields: string;
}

export function keyOf(spec: WatchTriggerSpec): WatchKey {
  return {
    resource: spec.resource,
    namespace: spec.namespace,
    labels: (spec.labels ?? "").trim(),
    fields: (spec.fields ?? "").trim(),
  };
}

/** A KV-safe id for a key. */
export function keyIdOf(key: WatchKey): string {
  const text = JSON.stringify([key.resource, key.namespace, key.labels, key.fields]);
  return createHash("sha256").update(text).digest("hex").slice(0, 24);
}

/** `configmaps in default (labels app=web)`, for logs and the KV entries. */
export function describeKey(key: WatchKey): string {
  const sel = [key.labels && `labels ${key.labels}`, key.fields && `fields ${key.fields}`]
    .filter(Boolean)
    .join(", ");
  return `${key.resource} in ${key.namespace}${sel ? ` (${sel})` : ""}`;
}

export function triggerId(t: WatchTrigger): string {
  return `${t.metadata.namespace}/${t.metadata.name}`;
}
