import type { V1Pod, V1PodCondition } from "@kubernetes/client-node";
import type { ContainerRunner } from "./container-runner";
import { rfc3339 } from "./kube";

export interface PodSnapshot {
  pod: V1Pod;
  podIP: string | undefined;
  hostIP: string;
  startTime: string;
  init: ContainerRunner[];
  main: ContainerRunner[];
  initialized: boolean;
  /** Set once the worker knows the pod is finished (or the init phase failed for good). */
  terminalPhase: "Succeeded" | "Failed" | undefined;
}

const OWNED = new Set(["PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"]);

/** The kubelet's phase rule (getPhase), applied to procnode's containers. */
export function podPhase(s: PodSnapshot): string {
  if (s.terminalPhase) return s.terminalPhase;
  if (!s.initialized) return "Pending";
  let running = 0;
  let waiting = 0;
  let stopped = 0;
  let succeeded = 0;
  for (const r of s.main) {
    if (r.state.running) running++;
    else if (r.state.terminated) {
      stopped++;
      if (r.state.terminated.exitCode === 0) succeeded++;
    } else if (r.lastState.terminated) stopped++;
    else waiting++;
  }
  const policy = s.pod.spec?.restartPolicy ?? "Always";
  if (waiting > 0) return "Pending";
  if (running > 0) return "Running";
  if (policy === "Always") return "Running";
  if (stopped === succeeded) return "Succeeded";
  return policy === "OnFailure" ? "Running" : "Failed";
}

/**
 * Pod conditions with kubelet semantics; lastTransitionTime only moves when a status flips
 * (`transitions` keeps the times between calls). Conditions owned by others (PodScheduled,
 * DisruptionTarget, readiness gates) are carried over from the latest pod.
 */
export function podConditions(
  s: PodSnapshot,
  phase: string,
  transitions: Map<string, { status: string; time: string }>,
): V1PodCondition[] {
  const cond = (type: string, ok: boolean, reason?: string, message?: string): V1PodCondition => {
    const status = ok ? "True" : "False";
    const prev = transitions.get(type);
    const time = prev && prev.status === status ? prev.time : rfc3339();
    transitions.set(type, { status, time });
    return {
      type,
      status,
      ...(!ok && reason !== undefined ? { reason } : {}),
      ...(!ok && message !== undefined ? { message } : {}),
      lastTransitionTime: time as never,
      lastProbeTime: null as never,
    };
  };
  const unready = s.main.filter((r) => !r.ready).map((r) => r.container.name);
  const uninit = s.init
    .filter((r) => !(r.state.terminated?.exitCode === 0))
    .map((r) => r.container.name);
  const foreign = (s.pod.status?.conditions ?? []).filter((c) => !OWNED.has(c.type));
  const gates = (s.pod.spec?.readinessGates ?? []).map((g) => g.conditionType);
  const gatesOk = gates.every((g) => foreign.some((c) => c.type === g && c.status === "True"));
  const completed = phase === "Succeeded" || phase === "Failed";
  const containersReady = unready.length === 0 && !completed;
  const ready = containersReady && gatesOk;
  const readyReason = completed
    ? "PodCompleted"
    : !containersReady
      ? "ContainersNotReady"
      : "ReadinessGatesNotReady";
  const readyMessage = completed
    ? undefined
    : !containersReady
      ? `containers with unready status: [${unready.join(" ")}]`
      : `corresponding condition of pod readiness gate "${gates.join(" ")}" does not exist or is not True`;
  return [
    ...foreign,
    cond("PodReadyToStartContainers", !!s.podIP && !completed),
    cond(
      "Initialized",
      s.initialized,
      completed ? "PodCompleted" : "ContainersNotInitialized",
      `containers with incomplete status: [${uninit.join(" ")}]`,
    ),
    cond(
      "ContainersReady",
      containersReady,
      completed ? "PodCompleted" : "ContainersNotReady",
      completed ? undefined : `containers with unready status: [${unready.join(" ")}]`,
    ),
    cond("Ready", ready, readyReason, readyMessage),
  ];
}

function containerStatus(r: ContainerRunner) {
  return {
    name: r.container.name,
    image: r.container.image ?? "",
    imageID: `procnode://${r.container.image ?? ""}`,
    containerID: r.pid !== undefined ? `procnode://${r.pid}` : r.state.terminated?.containerID,
    ready: r.ready,
    started: r.started && !!r.state.running,
    restartCount: r.restartCount,
    state: r.state,
    lastState: r.lastState,
  };
}

/** The whole status this agent owns, for a JSON merge patch of pods/status. */
export function buildStatus(
  s: PodSnapshot,
  transitions: Map<string, { status: string; time: string }>,
) {
  const phase = podPhase(s);
  return {
    phase,
    conditions: podConditions(s, phase, transitions),
    hostIP: s.hostIP,
    hostIPs: [{ ip: s.hostIP }],
    podIP: s.podIP ?? null,
    podIPs: s.podIP ? [{ ip: s.podIP }] : null,
    startTime: s.startTime,
    initContainerStatuses: s.init.length ? s.init.map(containerStatus) : null,
    containerStatuses: s.main.map(containerStatus),
  };
}
