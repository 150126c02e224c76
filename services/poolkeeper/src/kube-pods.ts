import { randomBytes } from "node:crypto";
import type { Environment } from "@fizz/events";
import type { V1Pod, V1ResourceRequirements } from "@kubernetes/client-node";

/**
 * The pod side of the kubernetes backend, as pure functions: what a pod of an environment looks
 * like, and what a pod seen through the informer means (ready, failed, adoptable). Everything a
 * restarted poolkeeper needs to rebuild its instance table is written on the pod itself (labels
 * for selection, annotations for the rest), so nothing lives only in the poolkeeper's memory.
 */
export const RUNTIME_PORT = 8888;
export const CONTAINER_NAME = "runtime";

export const Labels = {
  managedBy: "fizz.dev/managed-by",
  environment: "fizz.dev/environment",
  environmentNamespace: "fizz.dev/environment-namespace",
  state: "fizz.dev/state",
  instance: "fizz.dev/instance",
  function: "fizz.dev/function",
  functionNamespace: "fizz.dev/function-namespace",
  functionRevision: "fizz.dev/function-revision",
} as const;
export const MANAGED_BY = "poolkeeper";
export const POD_SELECTOR = `${Labels.managedBy}=${MANAGED_BY}`;

export const Annotations = {
  /** A deleted and recreated environment of the same name must not inherit the old one's pods. */
  environmentUid: "fizz.dev/environment-uid",
  concurrency: "fizz.dev/concurrency",
  specializedAt: "fizz.dev/specialized-at",
} as const;

export type ResourceList = { cpu?: string; memory?: string };
export interface PodResources {
  requests: ResourceList;
  limits: ResourceList;
}

export interface PodOptions {
  namespace: string;
  resources: PodResources;
  imagePullPolicy: "Always" | "IfNotPresent" | "Never";
  runAsUser: number;
  terminationGraceSeconds: number;
  /** FIZZ_SPECIALIZE_TOKEN: only the poolkeeper, which reads it back from the pod, may specialize. */
  specializeToken: string;
}

export const SPECIALIZE_TOKEN_VAR = "FIZZ_SPECIALIZE_TOKEN";
/** Where the runtime writes a function's secrets and configmaps (<dir>/<ns>/<name>/<key>). */
export const SECRETS_DIR = "/secrets";
export const CONFIGS_DIR = "/configs";

/** A new random specialize token. */
export function newSpecializeToken(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * The pod's specialize token, from its spec: a restarted poolkeeper that adopts a warm pod needs
 * it, and the pod is the only place it is written down (readable only with the poolkeeper's Role).
 */
export function specializeTokenOf(pod: V1Pod | undefined): string | undefined {
  const c = pod?.spec?.containers.find((x) => x.name === CONTAINER_NAME);
  return c?.env?.find((e) => e.name === SPECIALIZE_TOKEN_VAR)?.value;
}

/**
 * `<env>-<10 hex>`: the pod name, the instance id and the `fizz.dev/instance` label value at once,
 * so it must be a DNS-1123 label (at most 63 characters, no trailing '-').
 */
export function newInstanceId(envName: string): string {
  const prefix = envName.slice(0, 52).replace(/-+$/, "") || "env";
  return `${prefix}-${randomBytes(5).toString("hex")}`;
}

/**
 * The environment's own resources when its spec carries them (a `resources` field the registry
 * schema may grow), each value over the poolkeeper's defaults.
 */
export function resourcesFor(env: Environment, defaults: PodResources): PodResources {
  const own = (env.spec as { resources?: unknown }).resources;
  const pick = (v: unknown): ResourceList => {
    if (typeof v !== "object" || v === null) return {};
    const r = v as Record<string, unknown>;
    const out: ResourceList = {};
    if (typeof r.cpu === "string") out.cpu = r.cpu;
    if (typeof r.memory === "string") out.memory = r.memory;
    return out;
  };
  const o = typeof own === "object" && own !== null ? (own as Record<string, unknown>) : {};
  return {
    requests: { ...defaults.requests, ...pick(o.requests) },
    limits: { ...defaults.limits, ...pick(o.limits) },
  };
}

function toK8sResources(r: PodResources): V1ResourceRequirements {
  const out: V1ResourceRequirements = {};
  if (Object.keys(r.requests).length) out.requests = { ...r.requests };
  if (Object.keys(r.limits).length) out.limits = { ...r.limits };
  return out;
}

/**
 * A bare Pod running the environment's loader, generic ("warm") until specialized.
 * - restartPolicy Never: a crashed instance is replaced, never restarted, because a restarted
 *   container would come back unspecialized behind an address the gateways still hold (Fission
 *   #1501). The poolkeeper sees the Failed pod, reports it died and refills.
 * - Probes use /healthz: /readyz answers 503 until specialized, and a warm pod is exactly the one
 *   that is ready to be specialized.
 * - No service account token, no service links, non-root, no privilege escalation, no
 *   capabilities, the runtime's default seccomp profile, requests and limits: the function is user
 *   code and gets nothing it does not need. /userfunc (the images' FIZZ_WORKDIR) and /tmp are
 *   emptyDirs, so the root filesystem can stay read-only whatever uid the image declares.
 * - /secrets and /configs (FIZZ_SECRETS_DIR, FIZZ_CONFIGS_DIR) are emptyDirs the runtime fills at
 *   specialization, where Fission mounts them; /secrets is memory-backed, so secret values never
 *   reach the node's disk. A warm pod exists before anyone knows its function (and so its
 *   secrets), so they cannot be Secret volumes.
 * - Only the documented variables (docs/runtime-contract.md); k8s/networkpolicy.yaml keeps the pod
 *   away from NATS, Redis, the registry and the API server.
 */
export function podManifest(env: Environment, id: string, opts: PodOptions): V1Pod {
  const probe = (periodSeconds: number, failureThreshold: number) => ({
    httpGet: { path: "/healthz", port: RUNTIME_PORT },
    periodSeconds,
    failureThreshold,
    timeoutSeconds: 2,
  });
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: id,
      namespace: opts.namespace,
      labels: {
        [Labels.managedBy]: MANAGED_BY,
        [Labels.environment]: env.metadata.name,
        [Labels.environmentNamespace]: env.metadata.namespace,
        [Labels.state]: "warm",
        [Labels.instance]: id,
      },
      annotations: { [Annotations.environmentUid]: env.metadata.uid },
    },
    spec: {
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: opts.terminationGraceSeconds,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: opts.runAsUser,
        runAsGroup: opts.runAsUser,
        fsGroup: opts.runAsUser,
        seccompProfile: { type: "RuntimeDefault" },
      },
      containers: [
        {
          name: CONTAINER_NAME,
          image: env.spec.image,
          imagePullPolicy: opts.imagePullPolicy,
          ...(env.spec.command ? { command: [...env.spec.command] } : {}),
          ports: [{ name: "http", containerPort: RUNTIME_PORT }],
          env: [
            { name: "PORT", value: String(RUNTIME_PORT) },
            { name: "FIZZ_INSTANCE_ID", value: id },
            { name: "PYTHONUNBUFFERED", value: "1" },
            { name: "HOME", value: "/tmp" },
            { name: SPECIALIZE_TOKEN_VAR, value: opts.specializeToken },
            { name: "FIZZ_SECRETS_DIR", value: SECRETS_DIR },
            { name: "FIZZ_CONFIGS_DIR", value: CONFIGS_DIR },
          ],
          readinessProbe: probe(1, 1),
          livenessProbe: probe(10, 3),
          resources: toK8sResources(opts.resources),
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ["ALL"] },
          },
          volumeMounts: [
            { name: "userfunc", mountPath: "/userfunc" },
            { name: "tmp", mountPath: "/tmp" },
            { name: "secrets", mountPath: SECRETS_DIR },
            { name: "configs", mountPath: CONFIGS_DIR },
          ],
        },
      ],
      volumes: [
        { name: "userfunc", emptyDir: {} },
        { name: "tmp", emptyDir: {} },
        // 32 secrets of at most 1 MiB each (the registry's limits), in the pod's memory limit.
        { name: "secrets", emptyDir: { medium: "Memory", sizeLimit: "40Mi" } },
        { name: "configs", emptyDir: {} },
      ],
    },
  };
}

/** What one informer snapshot of a pod means for the pool. */
export type PodCondition =
  /** `fatal`: it will never start (bad image, bad config); `why`: what it waits for. */
  | { kind: "pending"; fatal?: string; why?: string }
  | { kind: "ready"; address: string }
  /** Running but not (or no longer) passing its readiness probe. */
  | { kind: "unready" }
  | { kind: "ended"; reason: string; code: number | null };

/** Container waiting reasons that never resolve by themselves: fail the spawn now, not at timeout. */
const FATAL_WAITING = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
  "CreateContainerConfigError",
  "CreateContainerError",
  "RunContainerError",
]);

export function podAddress(ip: string): string {
  return ip.includes(":") ? `http://[${ip}]:${RUNTIME_PORT}` : `http://${ip}:${RUNTIME_PORT}`;
}

export function conditionOf(pod: V1Pod): PodCondition {
  const name = pod.metadata?.name ?? "?";
  const status = pod.status;
  const cs = status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
  if (pod.metadata?.deletionTimestamp)
    return { kind: "ended", reason: `pod ${name} is being deleted`, code: null };
  if (status?.phase === "Failed" || status?.phase === "Succeeded") {
    const t = cs?.state?.terminated;
    const why = [t?.reason ?? status.reason, t?.message ?? status.message]
      .filter(Boolean)
      .join(": ");
    const code = t?.exitCode ?? null;
    return {
      kind: "ended",
      reason: `pod ${name} ${status.phase === "Failed" ? "failed" : "exited"}${code !== null ? ` with code ${code}` : ""}${why ? ` (${why})` : ""}`,
      code,
    };
  }
  const waiting = cs?.state?.waiting?.reason;
  if (waiting && FATAL_WAITING.has(waiting))
    return {
      kind: "pending",
      fatal: `${waiting}${cs?.state?.waiting?.message ? `: ${cs.state.waiting.message}` : ""}`,
    };
  if (status?.phase !== "Running") {
    const unscheduled = status?.conditions?.find(
      (c) => c.type === "PodScheduled" && c.status === "False",
    );
    const why = unscheduled?.message ?? cs?.state?.waiting?.reason;
    return why ? { kind: "pending", why } : { kind: "pending" };
  }
  const ready = status.conditions?.some((c) => c.type === "Ready" && c.status === "True");
  const ip = status.podIP;
  return ready && ip ? { kind: "ready", address: podAddress(ip) } : { kind: "unready" };
}

/** Whether this pod can serve the environment as it is now (same object, same image and command). */
export function podMatches(pod: V1Pod, env: Environment): boolean {
  const c = pod.spec?.containers.find((x) => x.name === CONTAINER_NAME);
  return (
    pod.metadata?.annotations?.[Annotations.environmentUid] === env.metadata.uid &&
    pod.metadata.labels?.[Labels.environmentNamespace] === env.metadata.namespace &&
    pod.metadata.labels[Labels.environment] === env.metadata.name &&
    c?.image === env.spec.image &&
    JSON.stringify(c.command ?? null) === JSON.stringify(env.spec.command ?? null)
  );
}
