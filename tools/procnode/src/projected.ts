import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { V1Pod, V1ProjectedVolumeSource } from "@kubernetes/client-node";
import type { Kube } from "./kube";
import { readData } from "./pod-env";

/**
 * A projected volume (what the ServiceAccount admission adds as kube-api-access-*): each source is
 * written into `dir` — a real service-account token from the TokenRequest API, bound to the pod as
 * the kubelet asks for it; ConfigMap/Secret keys; downward-API fields. Returns the token file when
 * one was written.
 */
export async function writeProjected(
  pod: V1Pod,
  src: V1ProjectedVolumeSource,
  dir: string,
  kube: Kube,
): Promise<string | undefined> {
  const ns = pod.metadata?.namespace ?? "default";
  let tokenFile: string | undefined;
  const put = async (rel: string, content: string) => {
    const file = path.join(dir, rel);
    if (!file.startsWith(dir + path.sep)) return;
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content, { mode: 0o600 });
  };
  await mkdir(dir, { recursive: true });
  for (const s of src.sources ?? []) {
    if (s.serviceAccountToken) {
      const t = s.serviceAccountToken;
      const res = await kube.core.createNamespacedServiceAccountToken({
        name: pod.spec?.serviceAccountName ?? "default",
        namespace: ns,
        body: {
          spec: {
            audiences: t.audience ? [t.audience] : [],
            // 3607 s is the kubelet's value; the API server extends such tokens (extend-token-expiration).
            expirationSeconds: t.expirationSeconds ?? 3607,
            boundObjectRef: {
              apiVersion: "v1",
              kind: "Pod",
              ...(pod.metadata?.name !== undefined ? { name: pod.metadata.name } : {}),
              ...(pod.metadata?.uid !== undefined ? { uid: pod.metadata.uid } : {}),
            },
          },
        },
      });
      await put(t.path, res.status?.token ?? "");
      tokenFile = path.join(dir, t.path);
    } else if (s.configMap || s.secret) {
      const data = s.configMap
        ? await readData({ kube }, "ConfigMap", ns, s.configMap.name, s.configMap.optional)
        : await readData({ kube }, "Secret", ns, s.secret?.name, s.secret?.optional);
      const items = (s.configMap ?? s.secret)?.items;
      const entries = items?.length
        ? items.map((i) => [i.path, data[i.key] ?? ""] as const)
        : Object.entries(data);
      for (const [rel, content] of entries) await put(rel, content);
    } else if (s.downwardAPI) {
      for (const item of s.downwardAPI.items ?? []) {
        const f = item.fieldRef?.fieldPath;
        const m = f ? /^metadata\.(name|namespace|uid)$/.exec(f) : null;
        if (m)
          await put(item.path, String(pod.metadata?.[m[1] as "name" | "namespace" | "uid"] ?? ""));
      }
    }
  }
  return tokenFile;
}

/**
 * Processes cannot see /var/run/secrets/kubernetes.io/serviceaccount, so in-cluster config cannot
 * work. Instead a container that mounts a service-account token gets KUBECONFIG: the real API
 * server, its CA, and that token (the pod acts as its service account, with its RBAC).
 */
export async function writeKubeconfig(
  pod: V1Pod,
  tokenFile: string,
  file: string,
  kube: Kube,
): Promise<void> {
  const cluster = kube.kc.getCurrentCluster();
  const caFile = path.join(path.dirname(tokenFile), "ca.crt");
  const ca = await readFile(caFile, "utf8").catch(() => undefined);
  const caEntry = ca
    ? { "certificate-authority": caFile }
    : cluster?.caData
      ? { "certificate-authority-data": cluster.caData }
      : cluster?.caFile
        ? { "certificate-authority": cluster.caFile }
        : { "insecure-skip-tls-verify": true };
  const ns = pod.metadata?.namespace ?? "default";
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "cluster", cluster: { server: kube.server, ...caEntry } }],
    users: [{ name: "serviceaccount", user: { "token-file": tokenFile } }],
    contexts: [
      { name: "in-pod", context: { cluster: "cluster", user: "serviceaccount", namespace: ns } },
    ],
    "current-context": "in-pod",
  };
  await writeFile(file, JSON.stringify(config, null, 2), { mode: 0o600 });
}
