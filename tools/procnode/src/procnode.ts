import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { silentLogger } from "@fizz/kit";
import { ListWatch, Watch, type V1Pod } from "@kubernetes/client-node";
import { defaultImageMap } from "./images";
import { IpPool } from "./ip-pool";
import { errorMessage, isConflict, isNotFound, makeKube, type Kube } from "./kube";
import { NodeAgent } from "./node-agent";
import { PodWorker } from "./pod-worker";
import { ServiceResolver } from "./service-resolver";
import type { Procnode, ProcnodeOptions } from "./types";

/** Host variables a program needs to run at all; everything else comes from the pod spec. */
const PASS_ENV = [
  "PATH",
  "HOME",
  "LANG",
  "LC_ALL",
  "TZ",
  "TMPDIR",
  "USER",
  "PYENV_ROOT",
  "PYENV_VERSION",
];

/**
 * Starts a node agent: registers a Ready Node named `nodeName`, keeps it alive, and runs the pods
 * the scheduler binds to it as local processes with pod IPs 127.0.0.N. Resolves once the node is
 * registered, schedulable (unless `waitSchedulable: false`) and its pod watch is running.
 */
export async function startProcnode(opts: ProcnodeOptions): Promise<Procnode> {
  const { nodeName } = opts;
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(nodeName))
    throw new Error(`nodeName "${nodeName}" is not a DNS-1123 subdomain`);
  const logger = (opts.logger ?? silentLogger()).child({ component: "procnode", node: nodeName });
  const kube: Kube = makeKube(opts.kubeconfig, opts.lookupKubeconfig);
  const ips = new IpPool(opts.podIpBase ?? "127.0.0");
  const ownRoot = !opts.rootDir;
  const rootDir = opts.rootDir ?? (await mkdtemp(path.join(tmpdir(), `procnode-${nodeName}-`)));
  await mkdir(rootDir, { recursive: true });

  const agent = new NodeAgent(kube, {
    nodeName,
    capacity: {
      cpu: opts.capacity?.cpu ?? "16",
      memory: opts.capacity?.memory ?? "64Gi",
      pods: opts.capacity?.pods ?? "110",
    },
    heartbeatMs: opts.heartbeatMs ?? 10_000,
    logger,
  });
  await agent.register();
  if ((opts.waitSchedulable ?? true) && !(await agent.waitSchedulable(30_000))) {
    logger.warn(
      "node still has the not-ready taint after 30 s; is the controller-manager running?",
    );
  }

  const workers = new Map<string, PodWorker>();
  const fieldSelector = `spec.nodeName=${nodeName}`;
  const informer = new ListWatch<V1Pod>(
    "/api/v1/pods",
    new Watch(kube.kc),
    () => kube.core.listPodForAllNamespaces({ fieldSelector }),
    false,
    undefined,
    fieldSelector,
  );
  const baseEnv: Record<string, string> = {};
  for (const k of PASS_ENV) if (process.env[k] !== undefined) baseEnv[k] = process.env[k];
  Object.assign(baseEnv, opts.env);
  const deps = {
    kube,
    ips,
    images: opts.images ?? defaultImageMap,
    resolver: new ServiceResolver(kube, () => [...informer.list()], logger),
    baseEnv,
    rootDir,
    hostIP: "127.0.0.1",
    backoff: opts.backoffMs ?? { initial: 1000, max: 30_000 },
    maxGraceSeconds: opts.maxGraceSeconds ?? 3,
    logger,
  };
  let stopped = false;

  /** A pod that never ran here (or whose processes died with a previous agent) is deleted outright. */
  const finalize = async (pod: V1Pod) => {
    try {
      const { name = "", namespace = "", uid } = pod.metadata ?? {};
      await kube.core.deleteNamespacedPod({
        name,
        namespace,
        gracePeriodSeconds: 0,
        body: { gracePeriodSeconds: 0, preconditions: uid !== undefined ? { uid } : {} },
      });
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err))
        logger.warn({ err: errorMessage(err) }, "finalizing pod deletion failed");
    }
  };

  const onPod = (pod: V1Pod) => {
    if (stopped) return;
    const uid = pod.metadata?.uid ?? "";
    const worker = workers.get(uid);
    if (worker) return worker.update(pod);
    const phase = pod.status?.phase;
    if (pod.metadata?.deletionTimestamp || phase === "Succeeded" || phase === "Failed") {
      if (pod.metadata?.deletionTimestamp) void finalize(pod);
      return;
    }
    const w = new PodWorker(pod, deps);
    workers.set(uid, w);
    w.start();
  };
  informer.on("add", onPod);
  informer.on("update", onPod);
  informer.on("delete", (pod) => {
    const uid = pod.metadata?.uid ?? "";
    const w = workers.get(uid);
    if (!w) return;
    // Deleted without us (e.g. --force --grace-period=0): kill right away, nothing left to delete.
    void w.terminate(false, 0).finally(() => workers.delete(uid));
  });
  informer.on("error", (err) => {
    if (stopped) return;
    logger.warn({ err: errorMessage(err) }, "pod watch failed; restarting in 1 s");
    setTimeout(() => {
      if (!stopped) void informer.start();
    }, 1000).unref();
  });
  await informer.start();
  logger.info({ rootDir }, "procnode ready");

  let stopping: Promise<void> | undefined;
  return {
    nodeName,
    pods: () => [...workers.values()].map((w) => w.info()),
    stop() {
      stopping ??= (async () => {
        stopped = true;
        await informer.stop();
        await Promise.all([...workers.values()].map((w) => w.terminate(false, 1000)));
        workers.clear();
        await agent.stop();
        if (ownRoot) await rm(rootDir, { recursive: true, force: true });
        logger.info("procnode stopped");
      })();
      return stopping;
    },
  };
}
