import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "@fizz/kit";
import type { V1Pod } from "@kubernetes/client-node";
import { ContainerRunner } from "./container-runner";
import { containerSpec } from "./container-spec";
import type { ImageMap } from "./images";
import type { IpPool } from "./ip-pool";
import type { LogLimits } from "./log-writer";
import { errorMessage, isConflict, isNotFound, mergePatch, rfc3339, type Kube } from "./kube";
import { kubeconfigOf, mountsOf, prepareVolumes, type PodVolumes } from "./pod-volumes";
import { buildStatus, podPhase } from "./pod-status";
import type { ServiceResolver } from "./service-resolver";
import type { PodInfo } from "./types";

export interface WorkerDeps {
  kube: Kube;
  ips: IpPool;
  images: ImageMap;
  resolver: ServiceResolver;
  baseEnv: Record<string, string>;
  rootDir: string;
  hostIP: string;
  backoff: { initial: number; max: number };
  maxGraceSeconds: number;
  logLimits: LogLimits;
  logger: Logger;
}

/** One pod on this node, from its first sight to its deletion: what a kubelet's pod worker does. */
export class PodWorker {
  private podIP: string | undefined;
  private readonly dir: string;
  private readonly init: ContainerRunner[];
  private readonly main: ContainerRunner[];
  private readonly startTime: string;
  private initialized = false;
  private terminalPhase: "Succeeded" | "Failed" | undefined;
  private terminating: Promise<void> | undefined;
  private readonly transitions = new Map<string, { status: string; time: string }>();
  private flushTimer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private lastSent = "";
  private closed = false;
  private readonly log: Logger;

  constructor(
    private pod: V1Pod,
    private readonly deps: WorkerDeps,
  ) {
    const m = pod.metadata ?? {};
    this.log = deps.logger.child({ pod: `${m.namespace}/${m.name}` });
    this.dir = path.join(deps.rootDir, `${m.namespace}_${m.name}_${(m.uid ?? "").slice(0, 8)}`);
    this.startTime = pod.status?.startTime ? rfc3339(new Date(pod.status.startTime)) : rfc3339();
    const runner = (init: boolean) => (c: NonNullable<V1Pod["spec"]>["containers"][number]) =>
      new ContainerRunner(c, {
        podName: m.name ?? "",
        podIP: () => this.podIP ?? "",
        restartPolicy: pod.spec?.restartPolicy ?? "Always",
        init,
        logDir: path.join(this.dir, "logs"),
        logLimits: deps.logLimits,
        backoff: deps.backoff,
        graceMs: () => this.graceMs(),
        logger: this.log,
        onChange: () => this.scheduleFlush(),
      });
    this.init = (pod.spec?.initContainers ?? []).map(runner(true));
    this.main = (pod.spec?.containers ?? []).map(runner(false));
    for (const r of this.init) r.state = { waiting: { reason: "PodInitializing" } };
  }

  get uid(): string {
    return this.pod.metadata?.uid ?? "";
  }

  /** "<namespace>/<name>", the key the log endpoint looks pods up by. */
  get key(): string {
    return `${this.pod.metadata?.namespace ?? ""}/${this.pod.metadata?.name ?? ""}`;
  }

  /** A container (init or main) by name, for the log endpoint. */
  runner(name: string): ContainerRunner | undefined {
    return [...this.init, ...this.main].find((r) => r.container.name === name);
  }

  /** Runs the pod in the background; status changes are patched as they happen. */
  start(): void {
    void this.run().catch((err: unknown) =>
      this.log.error({ err: errorMessage(err) }, "pod worker failed"),
    );
  }

  /** A newer version of the pod object; a deletionTimestamp starts graceful termination. */
  update(pod: V1Pod): void {
    this.pod = pod;
    if (pod.metadata?.deletionTimestamp) void this.terminate(true);
  }

  /**
   * SIGTERM every container, SIGKILL after the grace period (capped), then — when `deleteObject`
   * — delete the pod with gracePeriodSeconds 0, as the kubelet finalizes a deletion.
   */
  terminate(deleteObject: boolean, graceMs = this.graceMs()): Promise<void> {
    this.terminating ??= (async () => {
      this.log.info({ graceMs }, "terminating pod");
      await Promise.all([...this.init, ...this.main].map((r) => r.stop(graceMs)));
      if (deleteObject) {
        await this.flush().catch(() => undefined);
        try {
          const uid = this.uid;
          await this.deps.kube.core.deleteNamespacedPod({
            name: this.pod.metadata?.name ?? "",
            namespace: this.pod.metadata?.namespace ?? "",
            gracePeriodSeconds: 0,
            body: { gracePeriodSeconds: 0, preconditions: { uid } },
          });
        } catch (err) {
          if (!isNotFound(err) && !isConflict(err))
            this.log.warn({ err: errorMessage(err) }, "final pod delete failed");
        }
      }
      this.close();
    })();
    return this.terminating;
  }

  info(): PodInfo {
    const m = this.pod.metadata ?? {};
    return {
      namespace: m.namespace ?? "",
      name: m.name ?? "",
      uid: m.uid ?? "",
      podIP: this.podIP,
      phase: podPhase(this.snapshot()),
      dir: this.dir,
      containers: [...this.init, ...this.main].map((r) => ({
        name: r.container.name,
        image: r.container.image ?? "",
        pid: r.pid,
        ready: r.ready,
        restartCount: r.restartCount,
        state: r.state.running ? "running" : r.state.terminated ? "terminated" : "waiting",
        reason: r.state.waiting?.reason ?? r.state.terminated?.reason,
        exitCode: r.state.terminated?.exitCode,
        logFile: r.logFile,
      })),
    };
  }

  private async run(): Promise<void> {
    const ports = [...this.init, ...this.main].flatMap((r) =>
      (r.container.ports ?? [])
        .filter((p) => (p.protocol ?? "TCP") === "TCP")
        .map((p) => p.containerPort),
    );
    const ip = await this.deps.ips.allocateUsable(ports, this.pod.status?.podIP);
    if (this.terminating) return this.deps.ips.release(ip); // deleted while we looked for an IP
    this.podIP = ip;
    await mkdir(this.dir, { recursive: true });
    const volumes = await this.volumes();
    if (!volumes) return;
    this.scheduleFlush();
    const prepare = (r: ContainerRunner) => () =>
      containerSpec({
        pod: this.pod,
        container: r.container,
        podIP: ip,
        hostIP: this.deps.hostIP,
        podDir: this.dir,
        mounts: mountsOf(r.container, volumes.dirs),
        kubeconfig: kubeconfigOf(r.container, volumes),
        images: this.deps.images,
        kube: this.deps.kube,
        resolver: this.deps.resolver,
        baseEnv: this.deps.baseEnv,
      });
    for (const r of this.init) {
      const code = await r.run(prepare(r));
      if (this.terminating) return;
      if (code !== 0) return this.finish("Failed");
    }
    this.initialized = true;
    this.scheduleFlush();
    const codes = await Promise.all(this.main.map((r) => r.run(prepare(r))));
    if (this.terminating) return;
    await this.finish(codes.every((c) => c === 0) ? "Succeeded" : "Failed");
  }

  /** Volumes, retried every 2 s while a referenced ConfigMap/Secret is missing (the kubelet's FailedMount). */
  private async volumes(): Promise<PodVolumes | undefined> {
    for (;;) {
      try {
        return await prepareVolumes(this.pod, this.dir, this.deps.kube, this.log);
      } catch (err) {
        const message = `MountVolume.SetUp failed: ${errorMessage(err)}`;
        for (const r of [...this.init, ...this.main])
          r.state = { waiting: { reason: "ContainerCreating", message } };
        this.scheduleFlush();
        await new Promise((r) => setTimeout(r, 2000));
        if (this.terminating) return undefined;
      }
    }
  }

  private async finish(phase: "Succeeded" | "Failed"): Promise<void> {
    this.terminalPhase = phase;
    this.log.info({ phase }, "pod finished");
    await this.flush();
    // The IP is free for new pods; the terminal pod keeps it in its status, as in a cluster.
    if (this.podIP) this.deps.ips.release(this.podIP);
  }

  private graceMs(): number {
    const s =
      this.pod.metadata?.deletionGracePeriodSeconds ??
      this.pod.spec?.terminationGracePeriodSeconds ??
      30;
    return Math.min(s, this.deps.maxGraceSeconds) * 1000;
  }

  private snapshot() {
    return {
      pod: this.pod,
      podIP: this.podIP,
      hostIP: this.deps.hostIP,
      startTime: this.startTime,
      init: this.init,
      main: this.main,
      initialized: this.initialized,
      terminalPhase: this.terminalPhase,
    };
  }

  private scheduleFlush(): void {
    if (this.closed || this.flushTimer) return;
    // Coalesce bursts (a start changes state, then started, then ready) into one patch.
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush().catch((err: unknown) =>
        this.log.warn({ err: errorMessage(err) }, "status patch failed"),
      );
    }, 20);
  }

  /** Patches pods/status with the current status, one patch at a time, skipping no-op patches. */
  private async flush(): Promise<void> {
    while (this.writing) await this.writing;
    if (this.closed) return;
    const status = buildStatus(this.snapshot(), this.transitions);
    const json = JSON.stringify(status);
    if (json === this.lastSent) return;
    this.writing = (async () => {
      try {
        await this.deps.kube.core.patchNamespacedPodStatus(
          {
            name: this.pod.metadata?.name ?? "",
            namespace: this.pod.metadata?.namespace ?? "",
            body: { status },
          },
          mergePatch,
        );
        this.lastSent = json;
      } catch (err) {
        if (isNotFound(err)) this.closed = true;
        else throw err;
      } finally {
        this.writing = undefined;
      }
    })();
    return this.writing;
  }

  private close(): void {
    this.closed = true;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.podIP && !this.terminalPhase) this.deps.ips.release(this.podIP);
    void rm(this.dir, { recursive: true, force: true });
  }
}
