import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { silentLogger } from "@fizz/kit";
import { ListWatch, Watch, type V1Pod } from "@kubernetes/client-node";
import { defaultImageMap } from "./images";
import { IpPool } from "./ip-pool";
import { startKubeletServer, type ContainerLogs } from "./kubelet-server";
import { DEFAULT_LOG_LIMITS } from "./log-writer";
import { errorMessage, isConflict, isNotFound, makeKube, type Kube } from "./kube";
import { NodeAgent } from "./node-agent";
import type { ContainerRunner } from "./container-runner";
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

  const workers = new Map<string, PodWorker>();
  const kubelet = await startKubeletServer({
    nodeName,
    clientCa: await clientCa(kube, opts.clientCaFile),
    kubeConfig: kube.kc,
    lookup: (namespace, pod, container) => {
      const key = `${namespace}/${pod}`;
      const w = [...workers.values()].find((x) => x.key === key);
      const r = w?.runner(container);
      if (!w) return "pod";
      if (!r) return "container";
      return containerLogs(r);
    },
    ...(opts.kubeletPort !== undefined ? { port: opts.kubeletPort } : {}),
    logger,
  });
  const agent = new NodeAgent(kube, {
    nodeName,
    capacity: {
      cpu: opts.capacity?.cpu ?? "16",
      memory: opts.capacity?.memory ?? "64Gi",
      pods: opts.capacity?.pods ?? "110",
    },
    heartbeatMs: opts.heartbeatMs ?? 10_000,
    kubeletPort: kubelet.port,
    logger,
  });
  try {
    await agent.register();
  } catch (err) {
    await kubelet.close();
    throw err;
  }
  if ((opts.waitSchedulable ?? true) && !(await agent.waitSchedulable(30_000))) {
    logger.warn(
      "node still has the not-ready taint after 30 s; is the controller-manager running?",
    );
  }

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
    logLimits: { maxFileBytes: opts.maxLogFileBytes ?? DEFAULT_LOG_LIMITS.maxFileBytes },
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
    kubeletPort: kubelet.port,
    pods: () => [...workers.values()].map((w) => w.info()),
    stop() {
      stopping ??= (async () => {
        stopped = true;
        await informer.stop();
        await Promise.all([...workers.values()].map((w) => w.terminate(false, 1000)));
        workers.clear();
        await kubelet.close();
        await agent.stop();
        if (ownRoot) await rm(rootDir, { recursive: true, force: true });
        logger.info("procnode stopped");
      })();
      return stopping;
    },
  };
}

/** The CA for kubelet API clients: the given file, else the kubeconfig's cluster CA. */
async function clientCa(kube: Kube, file: string | undefined): Promise<string> {
  if (file) return readFile(file, "utf8");
  const cluster = kube.kc.getCurrentCluster();
  if (cluster?.caData) return Buffer.from(cluster.caData, "base64").toString("utf8");
  if (cluster?.caFile) return readFile(cluster.caFile, "utf8");
  throw new Error("no clientCaFile given and the kubeconfig names no cluster CA");
}

/** The runs of a container the log endpoint can read: the current (or last) one and the one before. */
function containerLogs(r: ContainerRunner): ContainerLogs {
  return {
    current() {
      const file = r.logFile;
      return file ? { file, live: () => r.logLive && r.logFile === file } : undefined;
    },
    previous() {
      const n = r.logFile ? Number(path.basename(r.logFile, ".log")) - 1 : -1;
      const file = r.logPath(n);
      return n >= 0 && existsSync(file) ? { file, live: () => false } : undefined;
    },
  };
}
