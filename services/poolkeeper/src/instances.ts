import type { FunctionRef, EnvironmentRef, Instance } from "@fizz/events";
import type { BackendInstance, BackendKind } from "./backend";

/** The poolkeeper's record of one instance it started, and its wire shape. */
export type TrackedState = "warm" | "specializing" | "specialized";
export const INSTANCE_STATES = ["starting", "warm", "specializing", "specialized"] as const;
export type InstanceCounts = Record<(typeof INSTANCE_STATES)[number], number>;

export interface Tracked {
  instance: BackendInstance;
  envKey: string;
  generation: number;
  state: TrackedState;
  /** Chosen for a kill: no longer offered, not listed. */
  killing: boolean;
  function?: FunctionRef;
  concurrency?: number;
  specializedAt?: number;
  /** Cancels the pending `stableMs` timer; set while the instance has not yet been up that long. */
  cancelStable?: (() => void) | undefined;
}

export function envKey(ref: EnvironmentRef): string {
  return `${ref.namespace}/${ref.name}`;
}

export function toInstance(t: Tracked, backend: BackendKind): Instance {
  const i: Instance = {
    id: t.instance.id,
    address: t.instance.address,
    environment: t.instance.environment,
    state: t.state === "specialized" ? "specialized" : "warm",
    backend,
    startedAt: t.instance.startedAt,
  };
  if (t.function) i.function = t.function;
  if (t.concurrency !== undefined) i.concurrency = t.concurrency;
  if (t.specializedAt !== undefined) i.specializedAt = t.specializedAt;
  return i;
}
