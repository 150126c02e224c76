import type { Environment, EnvironmentRef, FunctionRef } from "@fizz/events";
import type { V1Pod } from "@kubernetes/client-node";
import { Annotations, Labels, conditionOf, podAddress, podMatches } from "./kube-pods";

/**
 * What a restarted poolkeeper needs from the pods an earlier one left: the record a
 * specialization writes on its pod (labels to select by, annotations for the rest), read back at
 * start, and the sorting of the pods found then into adopted, claimable and to-be-deleted.
 */
export function environmentOf(pod: V1Pod): EnvironmentRef | undefined {
  const l = pod.metadata?.labels;
  const name = l?.[Labels.environment];
  const namespace = l?.[Labels.environmentNamespace];
  return name && namespace ? { namespace, name } : undefined;
}

export function startedAtOf(pod: V1Pod): number {
  const t = pod.status?.startTime ?? pod.metadata?.creationTimestamp;
  const ms = t ? new Date(t).getTime() : NaN;
  return Number.isFinite(ms) ? ms : Date.now();
}

/** What a specialization wrote on a pod. */
export interface SpecializedRecord {
  function: FunctionRef;
  concurrency: number;
  specializedAt: number;
}

/** The record, or undefined when it is incomplete (then the pod cannot be routed to safely). */
export function specializedRecordOf(pod: V1Pod): SpecializedRecord | undefined {
  const l = pod.metadata?.labels ?? {};
  const a = pod.metadata?.annotations ?? {};
  const name = l[Labels.function];
  const namespace = l[Labels.functionNamespace];
  const revision = Number(l[Labels.functionRevision]);
  const concurrency = Number(a[Annotations.concurrency]);
  const specializedAt = Number(a[Annotations.specializedAt]);
  if (!name || !namespace || !Number.isInteger(revision) || revision < 1) return undefined;
  if (!Number.isInteger(concurrency) || concurrency < 1 || !Number.isFinite(specializedAt))
    return undefined;
  return { function: { namespace, name, revision }, concurrency, specializedAt };
}

/**
 * The JSON patch (the client's default patch type) that marks a pod specialized. `add` replaces
 * an existing key, so a retried patch is harmless.
 */
export function specializedPatch(r: SpecializedRecord): object[] {
  const esc = (k: string) => k.replace(/~/g, "~0").replace(/\//g, "~1");
  const at = (where: "labels" | "annotations", k: string, value: string) => ({
    op: "add",
    path: `/metadata/${where}/${esc(k)}`,
    value,
  });
  return [
    at("labels", Labels.state, "specialized"),
    at("labels", Labels.function, r.function.name),
    at("labels", Labels.functionNamespace, r.function.namespace),
    at("labels", Labels.functionRevision, String(r.function.revision)),
    at("annotations", Annotations.concurrency, String(r.concurrency)),
    at("annotations", Annotations.specializedAt, String(r.specializedAt)),
  ];
}

export interface FoundSpecialized extends SpecializedRecord {
  name: string;
  environment: EnvironmentRef;
  address: string;
  startedAt: number;
}

export interface FoundPods {
  /** Adopted as they are: the scheduler finds them in poolkeeper.list and keeps or retires them. */
  specialized: FoundSpecialized[];
  /** Claimable by spawn() for a matching environment; deleted if none claims them. */
  warm: string[];
  /** Failed, unlabelled, or specialized without a usable record. */
  remove: Array<{ name: string; reason: string }>;
}

/** Sorts the pods listed at start; pods already being deleted are left to finish. */
export function sortFoundPods(pods: readonly V1Pod[]): FoundPods {
  const found: FoundPods = { specialized: [], warm: [], remove: [] };
  for (const pod of pods) {
    const name = pod.metadata?.name;
    if (!name || pod.metadata?.deletionTimestamp) continue;
    const c = conditionOf(pod);
    const environment = environmentOf(pod);
    const state = pod.metadata?.labels?.[Labels.state];
    if (c.kind === "ended") found.remove.push({ name, reason: c.reason });
    else if (!environment) found.remove.push({ name, reason: "it has no environment labels" });
    else if (state === "warm") found.warm.push(name);
    else {
      const record = state === "specialized" ? specializedRecordOf(pod) : undefined;
      const ip = pod.status?.podIP;
      if (record && ip)
        found.specialized.push({
          name,
          environment,
          address: podAddress(ip),
          startedAt: startedAtOf(pod),
          ...record,
        });
      else
        found.remove.push({
          name,
          reason: `it cannot be adopted (state ${state ?? "unset"}, ${record ? "no pod IP" : "no complete record"})`,
        });
    }
  }
  return found;
}

/** Warm pods found at start that spawn() may hand out instead of creating new ones. */
export class UnclaimedPods {
  private readonly names = new Set<string>();

  constructor(private readonly get: (name: string) => V1Pod | undefined) {}

  add(name: string): void {
    this.names.add(name);
  }

  /** True when it was unclaimed. */
  delete(name: string): boolean {
    return this.names.delete(name);
  }

  get size(): number {
    return this.names.size;
  }

  /** A pod that can serve this environment as it is now, a Ready one first; no longer offered. */
  claim(env: Environment): string | undefined {
    let best: string | undefined;
    let bestReady = false;
    for (const name of this.names) {
      const pod = this.get(name);
      if (!pod) {
        this.names.delete(name);
        continue;
      }
      if (!podMatches(pod, env)) continue;
      const ready = conditionOf(pod).kind === "ready";
      if (best === undefined || (ready && !bestReady)) [best, bestReady] = [name, ready];
    }
    if (best !== undefined) this.names.delete(best);
    return best;
  }

  /** Every name left, and forgets them. */
  drain(): string[] {
    const all = [...this.names];
    this.names.clear();
    return all;
  }
}
