import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "@fizz/kit";
import type { V1Container, V1KeyToPath, V1Pod } from "@kubernetes/client-node";
import type { Kube } from "./kube";
import { readData } from "./pod-env";
import { writeKubeconfig, writeProjected } from "./projected";

export interface PodVolumes {
  /** Volume name → its directory. */
  dirs: Map<string, string>;
  /** Volumes holding a service-account token → the kubeconfig that uses it. */
  kubeconfigs: Map<string, string>;
}

/**
 * Pod volumes as directories under the pod's temp dir: emptyDir (empty), configMap and secret (their
 * keys written as files), projected (incl. a real service-account token, see projected.ts). Other
 * kinds (PVCs, hostPath…) are not provided; the pod still runs and the gap is logged.
 */
export async function prepareVolumes(
  pod: V1Pod,
  podDir: string,
  kube: Kube,
  logger: Logger,
): Promise<PodVolumes> {
  const dirs = new Map<string, string>();
  const kubeconfigs = new Map<string, string>();
  const ns = pod.metadata?.namespace ?? "default";
  for (const v of pod.spec?.volumes ?? []) {
    const dir = path.join(podDir, "volumes", v.name);
    if (v.emptyDir) {
      await mkdir(dir, { recursive: true });
    } else if (v.configMap || v.secret) {
      const data = v.configMap
        ? await readData({ kube }, "ConfigMap", ns, v.configMap.name, v.configMap.optional)
        : await readData({ kube }, "Secret", ns, v.secret?.secretName, v.secret?.optional);
      await writeKeys(dir, data, (v.configMap ?? v.secret)?.items);
    } else if (v.projected) {
      const tokenFile = await writeProjected(pod, v.projected, dir, kube);
      if (tokenFile) {
        const file = path.join(podDir, `kubeconfig-${v.name}`);
        await writeKubeconfig(pod, tokenFile, file, kube);
        kubeconfigs.set(v.name, file);
      }
    } else {
      logger.debug({ volume: v.name }, "volume kind not supported by procnode; not provided");
      continue;
    }
    dirs.set(v.name, dir);
  }
  return { dirs, kubeconfigs };
}

async function writeKeys(
  dir: string,
  data: Record<string, string>,
  items: V1KeyToPath[] | undefined,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const entries = items?.length
    ? items.map((i) => [i.path, data[i.key] ?? ""] as const)
    : Object.entries(data);
  for (const [rel, content] of entries) {
    const file = path.join(dir, rel);
    if (!file.startsWith(dir + path.sep)) continue; // a key may not escape the volume
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content);
  }
}

/** The container's mounts that procnode provides: mount path → host dir (subPath applied). */
export function mountsOf(
  c: V1Container,
  volumeDirs: Map<string, string>,
): Array<{ mountPath: string; hostPath: string }> {
  const out: Array<{ mountPath: string; hostPath: string }> = [];
  for (const m of c.volumeMounts ?? []) {
    const dir = volumeDirs.get(m.name);
    if (dir)
      out.push({ mountPath: m.mountPath, hostPath: m.subPath ? path.join(dir, m.subPath) : dir });
  }
  return out;
}

/** The kubeconfig for a container that mounts a service-account token volume, if it does. */
export function kubeconfigOf(c: V1Container, volumes: PodVolumes): string | undefined {
  for (const m of c.volumeMounts ?? []) {
    const file = volumes.kubeconfigs.get(m.name);
    if (file) return file;
  }
  return undefined;
}
