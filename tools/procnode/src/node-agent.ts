import os from "node:os";
import type { Logger } from "@fizz/kit";
import type { V1Node } from "@kubernetes/client-node";
import {
  errorMessage,
  isConflict,
  isNotFound,
  mergePatch,
  microTime,
  rfc3339,
  type Kube,
} from "./kube";

const LEASE_NS = "kube-node-lease";
const LEASE_SECONDS = 40; // the kubelet's default; the node-lifecycle grace period is 50 s

export interface NodeAgentOptions {
  nodeName: string;
  capacity: { cpu: string; memory: string; pods: string };
  heartbeatMs: number;
  /** The kubelet API's port (kubelet-server.ts), published as daemonEndpoints.kubeletEndpoint. */
  kubeletPort: number;
  logger: Logger;
}

/**
 * The Node object and its heartbeats, as a kubelet keeps them: register, post a Ready status with
 * capacity (the scheduler needs `pods`), renew the Lease in kube-node-lease and refresh the Ready
 * condition's heartbeat, so the node-lifecycle controller never marks the node NotReady.
 */
export class NodeAgent {
  private timer: NodeJS.Timeout | undefined;
  private readonly startedAt = rfc3339();
  private nodeUid: string | undefined;

  constructor(
    private readonly kube: Kube,
    private readonly opts: NodeAgentOptions,
  ) {}

  async register(): Promise<void> {
    const { nodeName } = this.opts;
    const body: V1Node = {
      metadata: {
        name: nodeName,
        labels: {
          "kubernetes.io/hostname": nodeName,
          "kubernetes.io/os": "linux",
          "kubernetes.io/arch": os.arch() === "x64" ? "amd64" : os.arch(),
          "fizz.dev/procnode": "true",
        },
      },
    };
    try {
      const created = await this.kube.core.createNode({ body });
      this.nodeUid = created.metadata?.uid;
    } catch (err) {
      if (!isConflict(err)) throw err;
      // Re-registering after an agent restart keeps the Node (and so the pods bound to it).
      this.nodeUid = (await this.kube.core.readNode({ name: nodeName })).metadata?.uid;
    }
    await this.postStatus(true);
    await this.renewLease();
    this.timer = setInterval(() => void this.beat(), this.opts.heartbeatMs);
    this.timer.unref();
  }

  /** Polls until the node-lifecycle controller has removed the not-ready taint (about 1 s). */
  async waitSchedulable(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const node = await this.kube.core.readNode({ name: this.opts.nodeName });
      const taints = node.spec?.taints ?? [];
      if (
        !taints.some(
          (t) =>
            t.key === "node.kubernetes.io/not-ready" || t.key === "node.kubernetes.io/unreachable",
        )
      )
        return true;
      await new Promise((r) => setTimeout(r, 200));
    }
    return false;
  }

  /** Stops heartbeats and, best effort, reports NotReady so the node controller marks its pods not ready. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const timeout = new Promise<void>((r) => setTimeout(r, 2000).unref());
    await Promise.race([this.postStatus(false).catch(() => undefined), timeout]);
  }

  private async beat(): Promise<void> {
    try {
      await this.renewLease();
      await this.postStatus(true);
    } catch (err) {
      this.opts.logger.warn({ err: errorMessage(err) }, "node heartbeat failed");
    }
  }

  private async postStatus(ready: boolean): Promise<void> {
    const now = rfc3339();
    const { cpu, memory, pods } = this.opts.capacity;
    const resources = { cpu, memory, pods, "ephemeral-storage": "100Gi" };
    const cond = (type: string, status: string, reason: string, message: string) => ({
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: now,
      lastTransitionTime: this.startedAt,
    });
    const status = {
      capacity: resources,
      allocatable: resources,
      conditions: [
        cond(
          "MemoryPressure",
          "False",
          "KubeletHasSufficientMemory",
          "procnode does not enforce memory",
        ),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "procnode does not enforce disk"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "procnode does not enforce pids"),
        ready
          ? cond("Ready", "True", "KubeletReady", "procnode is posting ready status")
          : {
              ...cond("Ready", "False", "KubeletNotReady", "procnode stopped"),
              lastTransitionTime: now,
            },
      ],
      addresses: [
        { type: "InternalIP", address: "127.0.0.1" },
        { type: "Hostname", address: this.opts.nodeName },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: this.opts.kubeletPort } },
      nodeInfo: {
        machineID: "procnode",
        systemUUID: "procnode",
        bootID: this.startedAt,
        kernelVersion: os.release(),
        osImage: `procnode (${os.type()})`,
        containerRuntimeVersion: "procnode://0.1.0",
        kubeletVersion: "v1.35.4-procnode",
        kubeProxyVersion: "",
        operatingSystem: "linux",
        architecture: os.arch() === "x64" ? "amd64" : os.arch(),
      },
    };
    await this.kube.core.patchNodeStatus(
      { name: this.opts.nodeName, body: { status } },
      mergePatch,
    );
  }

  private async renewLease(): Promise<void> {
    const name = this.opts.nodeName;
    const spec = {
      holderIdentity: name,
      leaseDurationSeconds: LEASE_SECONDS,
      renewTime: microTime(),
    };
    try {
      await this.kube.coordination.patchNamespacedLease(
        { name, namespace: LEASE_NS, body: { spec } },
        mergePatch,
      );
    } catch (err) {
      if (!isNotFound(err)) throw err;
      const ownerReferences = this.nodeUid
        ? [{ apiVersion: "v1", kind: "Node", name, uid: this.nodeUid }]
        : undefined;
      // The body is sent as given: renewTime stays a MicroTime string with six fractional digits.
      await this.kube.coordination.createNamespacedLease({
        namespace: LEASE_NS,
        body: { metadata: { name, namespace: LEASE_NS, ownerReferences }, spec } as never,
      });
    }
  }
}
