import type { V1ConfigMap, V1Secret } from "@kubernetes/client-node";
import { missingConfig, type ConfigResolver, type FunctionConfig } from "./function-config";

/**
 * The label that gives a Secret or ConfigMap to one Fizz namespace. All function pods run in one
 * Kubernetes namespace (the poolkeeper's, FIZZ_POOLKEEPER_NAMESPACE), which also holds the
 * platform's own Secrets (fizz-credentials: NATS passwords, registry tokens). Reading "any Secret
 * of that name" would let a function name `fizz-credentials` and receive them, and let a function
 * of one Fizz namespace read another's. So a Secret or ConfigMap is a function's only when it
 * carries `fizz.dev/namespace=<the function's namespace>`; anything else is treated as missing
 * (with the same message whether or not it exists, so this is no way to probe for names).
 */
export const CONFIG_NAMESPACE_LABEL = "fizz.dev/namespace";

/** The two reads the resolver needs (kube-api.ts's PodApi; a fake in unit tests). */
export interface ConfigObjectReader {
  /** The Kubernetes namespace read from (where the function pods run). */
  readonly namespace: string;
  readSecret(name: string): Promise<V1Secret | undefined>;
  readConfigMap(name: string): Promise<V1ConfigMap | undefined>;
}

/**
 * Kubernetes backend: Secrets and ConfigMaps of the pods' namespace, labelled for the function's
 * Fizz namespace. Secret `data` is already base64; ConfigMap `data` is text (encoded here) and
 * `binaryData` base64. API failures other than 404 are UNAVAILABLE (retryable); values never reach
 * a log or an error.
 */
export function kubeConfigResolver(api: ConfigObjectReader): ConfigResolver {
  const why = (kind: string, name: string, ns: string) =>
    `looked for a Kubernetes ${kind} ${name} in namespace ${api.namespace} labelled ${CONFIG_NAMESPACE_LABEL}=${ns}`;
  return async (namespace, secrets, configmaps) => {
    const owned = <T extends V1Secret | V1ConfigMap>(o: T | undefined): T | undefined =>
      o?.metadata?.labels?.[CONFIG_NAMESPACE_LABEL] === namespace ? o : undefined;
    const [s, c] = await Promise.all([
      Promise.all(secrets.map((n) => api.readSecret(n))),
      Promise.all(configmaps.map((n) => api.readConfigMap(n))),
    ]);
    const out: FunctionConfig = { secrets: {}, configmaps: {} };
    secrets.forEach((name, i) => {
      const secret = owned(s[i]);
      if (!secret) throw missingConfig("secret", namespace, name, why("Secret", name, namespace));
      out.secrets[name] = { ...(secret.data ?? {}) };
    });
    configmaps.forEach((name, i) => {
      const cm = owned(c[i]);
      if (!cm) throw missingConfig("configmap", namespace, name, why("ConfigMap", name, namespace));
      const data: Record<string, string> = { ...(cm.binaryData ?? {}) };
      for (const [k, v] of Object.entries(cm.data ?? {}))
        data[k] = Buffer.from(v, "utf8").toString("base64");
      out.configmaps[name] = data;
    });
    return out;
  };
}
