import type { Logger } from "@fizz/kit";
import type { ImageMap } from "./images";

export interface ProcnodeOptions {
  /** Path of the kubeconfig the agent acts with: admin, or `k.nodeKubeconfig(name)` (system:node:<name>). */
  kubeconfig: string;
  /** Node name; must match the CN of a node kubeconfig. */
  nodeName: string;
  /** Which image runs which local program; default `defaultImageMap`. */
  images?: ImageMap;
  /** First three octets of pod IPs: pods get `<base>.2` upward. Default "127.0.0". Give each procnode its own base. */
  podIpBase?: string;
  logger?: Logger;
  /** Extra environment for every process, under the container's own env (e.g. FIZZ_LOG_LEVEL). */
  env?: Record<string, string>;
  /**
   * A kubeconfig for the look-ups a node identity may not make: Services and pods of other nodes
   * (service-name rewriting), Secrets and ConfigMaps. Default: `kubeconfig`.
   */
  lookupKubeconfig?: string;
  /** Node capacity (= allocatable). Defaults are generous (cpu 16, memory 64Gi, pods 110): nothing is enforced. */
  capacity?: { cpu?: string; memory?: string; pods?: string };
  /** Lease renewal and Ready heartbeat period. Default 10 000 ms, as the kubelet. */
  heartbeatMs?: number;
  /** Restart back-off: first delay and cap. Default 1 000 / 30 000 ms (the kubelet: 10 s / 300 s). */
  backoffMs?: { initial: number; max: number };
  /** Cap on terminationGracePeriodSeconds before SIGKILL. Default 3 s. */
  maxGraceSeconds?: number;
  /** Wait until the scheduler may bind pods to the node (not-ready taint removed). Default true. */
  waitSchedulable?: boolean;
  /**
   * PEM file of the CA whose client certificates may call the kubelet API (GET /containerLogs):
   * the API server's --kubelet-client-certificate must be signed by it. Default: the CA of
   * `kubeconfig`'s cluster (k8s-lite signs every certificate with one CA).
   */
  clientCaFile?: string;
  /** Port of the kubelet API on 127.0.0.1. Default 0: a free one (several procnodes per host). */
  kubeletPort?: number;
  /** A run's CRI log file is rotated past this size (one older part kept). Default 10 MiB. */
  maxLogFileBytes?: number;
  /** Root for pod directories (one temp dir per pod under it). Default a new dir in os.tmpdir(). */
  rootDir?: string;
}

export interface ContainerInfo {
  name: string;
  image: string;
  /** pid of the running process, if any. */
  pid: number | undefined;
  ready: boolean;
  restartCount: number;
  state: "waiting" | "running" | "terminated";
  reason: string | undefined;
  exitCode: number | undefined;
  /** stdout+stderr of the current (or last) run, as CRI entries (`<ts> stdout|stderr F|P <text>`). */
  logFile: string | undefined;
}

export interface PodInfo {
  namespace: string;
  name: string;
  uid: string;
  podIP: string | undefined;
  phase: string;
  /** The pod's temp dir (containers' cwd, emptyDir volumes, logs). */
  dir: string;
  containers: ContainerInfo[];
}

export interface Procnode {
  nodeName: string;
  /** The kubelet API's port on 127.0.0.1 (the Node's daemonEndpoints.kubeletEndpoint.Port). */
  kubeletPort: number;
  /** Pods this agent is running (or finishing), as it sees them. */
  pods(): PodInfo[];
  /** Kills every process (SIGTERM, then SIGKILL), stops heartbeats and watches. Idempotent. */
  stop(): Promise<void>;
}
