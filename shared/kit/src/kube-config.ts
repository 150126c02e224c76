import { KubeConfig } from "@kubernetes/client-node";

/**
 * Where a service finds its cluster: FIZZ_KUBECONFIG when given; in a pod, the service account
 * (the Roles in k8s/rbac.yaml); else the usual kubeconfig ($KUBECONFIG, ~/.kube/config), for
 * running a service beside a cluster. Its own entry point (`@fizz/kit/kube`) so services that
 * never talk to Kubernetes do not load client-node.
 */
export function loadKubeConfig(opts: {
  kubeconfig: string | undefined;
  inCluster: boolean;
}): KubeConfig {
  const kc = new KubeConfig();
  if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
  else if (opts.inCluster) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}
