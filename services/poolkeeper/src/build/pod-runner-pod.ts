import { randomBytes } from "node:crypto";
import { FizzError, type Environment } from "@fizz/events";
import type { V1Pod, V1ResourceRequirements } from "@kubernetes/client-node";
import type { PodResources } from "../kube-pods";

/**
 * The pod side of a build on the kubernetes backend, as pure functions: which image builds an
 * environment's packages, what a builder pod looks like, and what one seen through the API means.
 *
 * Builder pods carry none of the pool's labels (fizz.dev/managed-by, fizz.dev/environment): the
 * pool's informer selects fizz.dev/managed-by=poolkeeper, so it never adopts, claims or deletes a
 * builder pod, and k8s/networkpolicy.yaml's function policy (fizz.dev/environment) does not apply;
 * k8s/networkpolicy-builder.yaml does.
 */
export const BUILDER_PORT = 8888;
export const BUILDER_CONTAINER = "builder";
export const BuilderLabels = {
  component: "app.kubernetes.io/component",
  partOf: "app.kubernetes.io/part-of",
  /** `<namespace>-<package>` (cut to a label value), for `kubectl get pods -l`. */
  package: "fizz.dev/build-package",
} as const;
export const BUILDER_COMPONENT = "fizz-builder";
export const BUILDER_SELECTOR = `${BuilderLabels.component}=${BUILDER_COMPONENT},${BuilderLabels.partOf}=fizz`;
/**
 * Epoch milliseconds after which the pod is a leftover whoever created it: no build outlives its
 * time limit, so any poolkeeper may delete it then (several poolkeepers share the namespace).
 */
export const DEADLINE_ANNOTATION = "fizz.dev/build-deadline";
export const TOKEN_VAR = "FIZZ_BUILDER_TOKEN";
const WORK_DIR = "/work";

/**
 * The environment's builder.image, else the runtime image's `builder-` sibling: the last path
 * segment's leading `env-` becomes `builder-`, registry, tag and digest kept
 * (ghcr.io/acme/fizz/env-node:1.2 -> ghcr.io/acme/fizz/builder-node:1.2).
 */
export function builderImageOf(env: Environment): string {
  const own = env.spec.builder?.image;
  if (own) return own;
  const image = env.spec.image;
  // Tags and digests hold no '/', so the last one ends the registry and path.
  const slash = image.lastIndexOf("/");
  const head = image.slice(0, slash + 1);
  const last = image.slice(slash + 1);
  if (!last.startsWith("env-"))
    throw new FizzError(
      "VALIDATION_FAILED",
      `environment ${env.metadata.namespace}/${env.metadata.name} image ${image} has no builder sibling (env-<x> -> builder-<x>); set spec.builder.image`,
      { field: "spec.builder.image" },
    );
  return `${head}builder-${last.slice("env-".length)}`;
}

/** `fizz-build-<name>-<8 hex>`: a DNS-1123 label (at most 63 characters). */
export function builderPodName(name: string): string {
  const clean = labelValue(name).slice(0, 40).replace(/-+$/, "") || "pkg";
  return `fizz-build-${clean}-${randomBytes(4).toString("hex")}`;
}

function labelValue(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+/, "")
    .slice(0, 63)
    .replace(/-+$/, "");
}

export interface BuilderPodOptions {
  namespace: string;
  image: string;
  /** The build's `<namespace>-<package>`. */
  name: string;
  token: string;
  resources: PodResources;
  imagePullPolicy: "Always" | "IfNotPresent" | "Never";
  runAsUser: number;
  /** Seconds the pod may live at all: start, build and the reply (activeDeadlineSeconds). */
  lifetimeSeconds: number;
  now: number;
}

function toK8sResources(r: PodResources): V1ResourceRequirements {
  const out: V1ResourceRequirements = {};
  if (Object.keys(r.requests).length) out.requests = { ...r.requests };
  if (Object.keys(r.limits).length) out.limits = { ...r.limits };
  return out;
}

/**
 * One build's pod. The same containment as an instance pod (kube-pods.ts podManifest): no service
 * account token, no service links, non-root, no privilege escalation, no capabilities, seccomp,
 * read-only root with emptyDirs for the work directory and /tmp, requests and limits. Only the
 * program's own variables: the build's builder.env travels in the POST /build body and reaches the
 * build alone, never the server. activeDeadlineSeconds ends a pod whose poolkeeper vanished.
 */
export function builderPodManifest(podName: string, o: BuilderPodOptions): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: podName,
      namespace: o.namespace,
      labels: {
        [BuilderLabels.component]: BUILDER_COMPONENT,
        [BuilderLabels.partOf]: "fizz",
        [BuilderLabels.package]: labelValue(o.name) || "pkg",
      },
      annotations: { [DEADLINE_ANNOTATION]: String(o.now + o.lifetimeSeconds * 1000) },
    },
    spec: {
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 1,
      activeDeadlineSeconds: o.lifetimeSeconds,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: o.runAsUser,
        runAsGroup: o.runAsUser,
        fsGroup: o.runAsUser,
        seccompProfile: { type: "RuntimeDefault" },
      },
      containers: [
        {
          name: BUILDER_CONTAINER,
          image: o.image,
          imagePullPolicy: o.imagePullPolicy,
          ports: [{ name: "http", containerPort: BUILDER_PORT }],
          env: [
            { name: "PORT", value: String(BUILDER_PORT) },
            { name: "FIZZ_WORKDIR", value: WORK_DIR },
            { name: "HOME", value: WORK_DIR },
            { name: TOKEN_VAR, value: o.token },
          ],
          readinessProbe: {
            httpGet: { path: "/healthz", port: BUILDER_PORT },
            periodSeconds: 1,
            failureThreshold: 1,
            timeoutSeconds: 2,
          },
          resources: toK8sResources(o.resources),
          securityContext: {
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ["ALL"] },
          },
          volumeMounts: [
            { name: "work", mountPath: WORK_DIR },
            { name: "tmp", mountPath: "/tmp" },
          ],
        },
      ],
      volumes: [
        { name: "work", emptyDir: {} },
        { name: "tmp", emptyDir: {} },
      ],
    },
  };
}

/** A new random bearer token for one builder pod. */
export function newBuilderToken(): string {
  return randomBytes(32).toString("base64url");
}

export type BuilderPodState =
  | { kind: "waiting"; why?: string }
  | { kind: "ready"; address: string }
  | { kind: "failed"; reason: string };

/** Container waiting reasons that never resolve by themselves (as for instance pods). */
const FATAL_WAITING = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
  "CreateContainerConfigError",
  "CreateContainerError",
  "RunContainerError",
]);

export function builderPodState(pod: V1Pod | undefined): BuilderPodState {
  if (!pod) return { kind: "failed", reason: "the pod is gone" };
  if (pod.metadata?.deletionTimestamp)
    return { kind: "failed", reason: "the pod is being deleted" };
  const status = pod.status;
  const cs = status?.containerStatuses?.find((c) => c.name === BUILDER_CONTAINER);
  if (status?.phase === "Failed" || status?.phase === "Succeeded") {
    const t = cs?.state?.terminated;
    const why = [t?.reason ?? status.reason, t?.message ?? status.message].filter(Boolean);
    return { kind: "failed", reason: `the pod ended (${why.join(": ") || status.phase})` };
  }
  const waiting = cs?.state?.waiting;
  if (waiting?.reason && FATAL_WAITING.has(waiting.reason))
    return {
      kind: "failed",
      reason: `${waiting.reason}${waiting.message ? `: ${waiting.message}` : ""}`,
    };
  const ready = status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
  const ip = status?.podIP;
  if (status?.phase === "Running" && ready && ip)
    return {
      kind: "ready",
      address: ip.includes(":") ? `http://[${ip}]:${BUILDER_PORT}` : `http://${ip}:${BUILDER_PORT}`,
    };
  const unscheduled = status?.conditions?.find(
    (c) => c.type === "PodScheduled" && c.status === "False",
  );
  const why = unscheduled?.message ?? waiting?.reason ?? status?.phase;
  return why ? { kind: "waiting", why } : { kind: "waiting" };
}

/** Whether a builder pod found in the namespace is a leftover: ended, or past its deadline. */
export function isLeftover(pod: V1Pod, now: number): boolean {
  const phase = pod.status?.phase;
  if (phase === "Failed" || phase === "Succeeded") return true;
  const deadline = Number(pod.metadata?.annotations?.[DEADLINE_ANNOTATION]);
  // No readable deadline: not one of ours as written, so it is not kept alive by one.
  return !Number.isFinite(deadline) || deadline < now;
}
