import { existsSync } from "node:fs";
import path from "node:path";
import { FizzError } from "@fizz/events";
import type { KubeConfig } from "@kubernetes/client-node";
import type { KubewatcherConfig } from "./config";

const SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/**
 * Whether client-node's KubeConfig could find any cluster, checked without loading client-node:
 * the same places its loadFromDefault looks ($KUBECONFIG, ~/.kube/config, a pod's service
 * account), or FIZZ_KUBECONFIG / in-cluster when given. When none exists it would fall back to
 * http://localhost:8080, which KubeClient treats as "not configured" anyway.
 */
export function kubeConfigAvailable(
  config: Pick<KubewatcherConfig, "kubeconfig" | "inCluster">,
  env: NodeJS.ProcessEnv = process.env,
  exists: (file: string) => boolean = existsSync,
): boolean {
  if (config.kubeconfig || config.inCluster) return true;
  if (env.KUBECONFIG) return true;
  if (env.HOME && exists(path.join(env.HOME, ".kube", "config"))) return true;
  return exists(SERVICE_ACCOUNT_TOKEN);
}

/**
 * The cluster's KubeConfig, or undefined when there is none to load. client-node (about 1.4 MB of
 * bundled code, with tr46, js-yaml and ws: some 8 MB of a service's resident memory) is imported
 * only here, on demand: `npm start` on a machine without Kubernetes never loads it, and a watch
 * trigger then waits as it did before (KubeClient answers NotConfigured).
 */
export async function loadClusterConfig(
  config: KubewatcherConfig,
): Promise<KubeConfig | undefined> {
  if (!kubeConfigAvailable(config)) return undefined;
  const { loadKubeConfig } = await import("@fizz/kit/kube");
  try {
    return loadKubeConfig(config);
  } catch (err) {
    throw new FizzError(
      "VALIDATION_FAILED",
      `FIZZ_KUBECONFIG: cannot load ${config.kubeconfig ?? "the kubeconfig"}: ${(err as Error).message}`,
      { field: "FIZZ_KUBECONFIG", cause: err },
    );
  }
}
