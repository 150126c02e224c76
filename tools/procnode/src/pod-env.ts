import type { V1Container, V1EnvVarSource, V1Pod } from "@kubernetes/client-node";
import { errorMessage, isNotFound, type Kube } from "./kube";

/** A container that cannot be configured: the kubelet's CreateContainerConfigError. */
export class ConfigError extends Error {}

export interface EnvContext {
  pod: V1Pod;
  container: V1Container;
  podIP: string;
  hostIP: string;
  kube: Kube;
}

/** Kubernetes' $(VAR) expansion: `$(NAME)` becomes NAME's value when defined, `$$` escapes a `$`. */
export function expand(s: string, vars: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name: string | undefined) =>
    name === undefined ? "$" : Object.hasOwn(vars, name) ? (vars[name] ?? m) : m,
  );
}

/** The container's own environment (envFrom, then env), resolved like the kubelet does. */
export async function resolveEnv(
  ctx: EnvContext,
  under: Record<string, string>,
): Promise<Record<string, string>> {
  const { container, pod } = ctx;
  const ns = pod.metadata?.namespace ?? "default";
  const out: Record<string, string> = {};
  for (const src of container.envFrom ?? []) {
    const prefix = src.prefix ?? "";
    const data = src.configMapRef
      ? await readData(ctx, "ConfigMap", ns, src.configMapRef.name, src.configMapRef.optional)
      : src.secretRef
        ? await readData(ctx, "Secret", ns, src.secretRef.name, src.secretRef.optional)
        : {};
    for (const [k, v] of Object.entries(data)) out[prefix + k] = v;
  }
  for (const e of container.env ?? []) {
    if (e.valueFrom) {
      const v = await valueFrom(ctx, e.valueFrom, ns);
      if (v !== undefined) out[e.name] = v;
    } else {
      out[e.name] = expand(e.value ?? "", { ...under, ...out });
    }
  }
  return out;
}

async function valueFrom(
  ctx: EnvContext,
  src: V1EnvVarSource,
  ns: string,
): Promise<string | undefined> {
  if (src.fieldRef) return fieldValue(ctx, src.fieldRef.fieldPath);
  if (src.resourceFieldRef) {
    const { resource, divisor } = src.resourceFieldRef;
    const [kind = "", name = ""] = resource.split(".");
    const res = ctx.container.resources as
      Record<string, Record<string, string> | undefined> | undefined;
    const raw = res?.[kind]?.[name] ?? res?.limits?.[name];
    if (raw === undefined)
      throw new ConfigError(
        `resourceFieldRef ${resource}: not set on the container (procnode has no node-allocatable fallback)`,
      );
    const value = quantity(raw) / quantity(String(divisor ?? "1"));
    return String(Math.ceil(value));
  }
  if (src.configMapKeyRef) {
    const { name, key, optional } = src.configMapKeyRef;
    const data = await readData(ctx, "ConfigMap", ns, name, optional);
    if (data[key] === undefined && !optional)
      throw new ConfigError(`couldn't find key ${key} in ConfigMap ${ns}/${name}`);
    return data[key];
  }
  if (src.secretKeyRef) {
    const { name, key, optional } = src.secretKeyRef;
    const data = await readData(ctx, "Secret", ns, name, optional);
    if (data[key] === undefined && !optional)
      throw new ConfigError(`couldn't find key ${key} in Secret ${ns}/${name}`);
    return data[key];
  }
  throw new ConfigError("unsupported valueFrom source");
}

function fieldValue(ctx: EnvContext, fieldPath: string): string {
  const { pod, podIP, hostIP } = ctx;
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (m)
    return (
      (m[1] === "labels" ? pod.metadata?.labels : pod.metadata?.annotations)?.[m[2] ?? ""] ?? ""
    );
  switch (fieldPath) {
    case "metadata.name":
      return pod.metadata?.name ?? "";
    case "metadata.namespace":
      return pod.metadata?.namespace ?? "";
    case "metadata.uid":
      return pod.metadata?.uid ?? "";
    case "spec.nodeName":
      return pod.spec?.nodeName ?? "";
    case "spec.serviceAccountName":
      return pod.spec?.serviceAccountName ?? "";
    case "status.podIP":
    case "status.podIPs":
      return podIP;
    case "status.hostIP":
    case "status.hostIPs":
      return hostIP;
    default:
      throw new ConfigError(`unsupported fieldRef ${fieldPath}`);
  }
}

/** ConfigMap data (and binaryData) or Secret data, decoded; {} when optional and missing. */
export async function readData(
  ctx: { kube: Kube },
  kind: "ConfigMap" | "Secret",
  namespace: string,
  name: string | undefined,
  optional: boolean | undefined,
): Promise<Record<string, string>> {
  try {
    if (kind === "ConfigMap") {
      const cm = await ctx.kube.lookup.readNamespacedConfigMap({ name: name ?? "", namespace });
      const bin = Object.entries(cm.binaryData ?? {}).map(([k, v]): [string, string] => [
        k,
        Buffer.from(v, "base64").toString("utf8"),
      ]);
      return { ...cm.data, ...Object.fromEntries(bin) };
    }
    const secret = await ctx.kube.lookup.readNamespacedSecret({ name: name ?? "", namespace });
    const data = Object.entries(secret.data ?? {}).map(([k, v]): [string, string] => [
      k,
      Buffer.from(v, "base64").toString("utf8"),
    ]);
    return { ...Object.fromEntries(data), ...secret.stringData };
  } catch (err) {
    if (isNotFound(err)) {
      if (optional) return {};
      throw new ConfigError(`${kind.toLowerCase()} "${name}" not found`);
    }
    throw new ConfigError(`reading ${kind} ${namespace}/${name}: ${errorMessage(err)}`);
  }
}

const SUFFIX: Record<string, number> = {
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
};

/** A resource quantity ("250m", "128Mi", "2") as a number. */
export function quantity(q: string): number {
  const m = /^([0-9.]+)([a-zA-Z]*)$/.exec(q.trim());
  const mult = m ? (m[2] ? SUFFIX[m[2]] : 1) : undefined;
  if (!m || mult === undefined) throw new ConfigError(`bad quantity "${q}"`);
  return Number(m[1]) * mult;
}

/**
 * Processes do not see mount paths (no mount namespace). An emptyDir/configMap/secret volume is a
 * temp dir, and a mount path in an arg or env value (`/data`, `/data/x`, `--dir=/data`) is
 * rewritten to that dir. Longest mount path first, so `/data/sub` wins over `/data`.
 */
export function mapMountPaths(
  s: string,
  mounts: Array<{ mountPath: string; hostPath: string }>,
): string {
  const sorted = [...mounts].sort((a, b) => b.mountPath.length - a.mountPath.length);
  for (const { mountPath, hostPath } of sorted) {
    const esc = mountPath.replace(/\/+$/, "").replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const re = new RegExp(`(^|=)${esc}(?=/|$)`);
    if (re.test(s)) return s.replace(re, (_m, pre: string) => pre + hostPath);
  }
  return s;
}
