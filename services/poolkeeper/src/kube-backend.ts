import { FizzError, type Environment, type EnvironmentRef, type Instance } from "@fizz/events";
import { sleep, type Logger } from "@fizz/kit";
import type { KubeConfig, V1Pod } from "@kubernetes/client-node";
import type { AdoptedInstance, Backend, BackendInstance, ExitInfo, OutputStream } from "./backend";
import type { ConfigResolver, FunctionConfig } from "./function-config";
import { waitHealthy } from "./health";
import { PodApi } from "./kube-api";
import { kubeConfigResolver } from "./kube-function-config";
import { UnclaimedPods, sortFoundPods, specializedPatch, startedAtOf } from "./kube-adoption";
import { PodLogs, type PodLogState } from "./kube-logs";
import {
  CONTAINER_NAME,
  conditionOf,
  newInstanceId,
  newSpecializeToken,
  podManifest,
  resourcesFor,
  specializeTokenOf,
  type PodResources,
} from "./kube-pods";
import { PodRecord } from "./kube-record";
import { PodWatch } from "./kube-watch";
import type { InstanceAgent } from "./instance-http";

export interface KubeBackendOptions {
  kubeConfig: KubeConfig;
  /** Where the pods live (the poolkeeper's own namespace; its Role covers only that one). */
  namespace: string;
  /** Used where the environment names none. */
  resources: PodResources;
  imagePullPolicy: "Always" | "IfNotPresent" | "Never";
  runAsUser: number;
  /** Pod creation until Ready (scheduling and an image pull included). */
  startTimeoutMs: number;
  /** Ready until GET /healthz answers from here (proves the pod IP is reachable). */
  healthTimeoutMs: number;
  /** The pod's deletion grace period. */
  killGraceMs: number;
  agent: InstanceAgent;
  logger: Logger;
}

/** How long kill() waits for the watch to confirm a deletion before trusting the API's answer. */
const KILL_CONFIRM_MS = 10_000;
/** How long a crashed pod's exit waits for its log follow to read the last lines. */
const LOG_DRAIN_MS = 10_000;
/** How long a deleted pod's follow may still read what its container wrote while stopping. */
const LOG_AFTER_DELETE_MS = 5_000;

/**
 * Instances as bare Pods in one namespace. The pool decides how many; this backend creates and
 * deletes pods and learns everything else from the pod informer: a pod is a warm instance once it
 * is Running and Ready with a pod IP (http://<podIP>:8888), and it has ended once it is Failed,
 * Succeeded, being deleted or gone — which the pool hears as an exit (a "died" event unless we
 * deleted it).
 *
 * Pods outlive the poolkeeper. start() lists them before anything is created: specialized ones
 * are adopted from their labels and annotations, warm ones wait to be claimed by spawn() (which
 * hands out a matching existing pod before creating one), and releaseUnclaimed() deletes the warm
 * pods no environment claimed once the registry has been listed. So a restart creates no
 * duplicates and leaves no orphans.
 */
export class KubeBackend implements Backend {
  readonly kind = "kubernetes" as const;
  readonly instancesOutliveClose = true;
  private readonly api: PodApi;
  private readonly watch: PodWatch;
  private readonly pods = new Map<string, PodRecord>();
  private readonly unclaimed: UnclaimedPods;
  private readonly exitListeners: Array<(i: BackendInstance, info: ExitInfo) => void> = [];
  private readonly outputListeners: Array<
    (i: BackendInstance, stream: OutputStream, line: string, writtenAt?: number) => void
  > = [];
  private readonly logs: PodLogs;
  private readonly patches = new Set<Promise<void>>();
  private started: Promise<AdoptedInstance[]> | undefined;
  /** Adopted pods' log follows wait for this (adoptedReady): their secrets are masked first. */
  private releaseAdoptedLogs!: (ready: Promise<unknown>) => void;
  private readonly adoptedLogs = new Promise<unknown>((r) => (this.releaseAdoptedLogs = r));
  private listed = false;
  private closing = false;
  private readonly log: Logger;
  private readonly config: ConfigResolver;

  constructor(private readonly opts: KubeBackendOptions) {
    this.log = opts.logger.child({ component: "kube-backend" });
    this.api = new PodApi(opts.kubeConfig, opts.namespace, opts.logger);
    this.config = kubeConfigResolver(this.api);
    this.watch = new PodWatch({
      kubeConfig: opts.kubeConfig,
      core: this.api.core,
      namespace: opts.namespace,
      logger: opts.logger,
      onChange: (p) => this.changed(p),
      onDelete: (p) => this.deleted(p),
    });
    this.unclaimed = new UnclaimedPods((name) => this.watch.get(name));
    this.logs = new PodLogs({
      kubeConfig: opts.kubeConfig,
      namespace: opts.namespace,
      container: CONTAINER_NAME,
      state: (name) => this.logState(name),
      onLine: (instance, stream, line, writtenAt) => {
        for (const cb of this.outputListeners) cb(instance, stream, line, writtenAt);
      },
      logger: opts.logger,
    });
  }

  /** Any image can run in a pod; a bad one fails its spawns (ErrImagePull) with the reason. */
  unsupported(): string | undefined {
    return undefined;
  }

  start(signal: AbortSignal): Promise<AdoptedInstance[]> {
    this.started ??= (async () => {
      await this.watch.start(signal);
      if (signal.aborted || this.closing) return [];
      this.listed = true;
      return this.adoptAll();
    })();
    return this.started;
  }

  spawn(env: Environment): Promise<BackendInstance> {
    if (this.closing)
      return Promise.reject(new FizzError("UNAVAILABLE", "the kubernetes backend is stopping"));
    if (!this.listed) {
      // Nothing is created before the pods already there are known: they may be the ones to use.
      const started = this.started;
      if (!started) return Promise.reject(new Error("KubeBackend.start() must run before spawn()"));
      return started.then(() =>
        this.listed ? this.spawn(env) : Promise.reject(new FizzError("UNAVAILABLE", "not started")),
      );
    }
    // Synchronous: once the registry listing has upserted every environment (and so called
    // spawn() for each pool), every claim is made and releaseUnclaimed() may run.
    return this.startPod(env, this.unclaimed.claim(env));
  }

  private async startPod(env: Environment, claimed: string | undefined): Promise<BackendInstance> {
    const ref = { namespace: env.metadata.namespace, name: env.metadata.name };
    const id = claimed ?? newInstanceId(env.metadata.name);
    // Tracked before the create call: the watch may report the pod before the call returns.
    const rec = this.track(id, ref);
    if (!claimed) {
      const pod = podManifest(env, id, {
        namespace: this.opts.namespace,
        resources: resourcesFor(env, this.opts.resources),
        imagePullPolicy: this.opts.imagePullPolicy,
        runAsUser: this.opts.runAsUser,
        terminationGraceSeconds: this.graceSeconds(),
        specializeToken: newSpecializeToken(),
      });
      await this.api.create(pod).catch((err: unknown) => {
        this.end(rec, "not created", null);
        throw err;
      });
    }
    let address: string;
    try {
      const pod = this.watch.get(id);
      address = await rec.untilReady(pod && conditionOf(pod), this.opts.startTimeoutMs);
      await waitHealthy(address, this.opts.agent, {
        timeoutMs: this.opts.healthTimeoutMs,
        exited: rec.gone,
      });
    } catch (err) {
      // While stopping, a starting pod is left for the next poolkeeper to adopt.
      if (!rec.ended && !this.closing) void this.kill(id, "did not become ready");
      throw new FizzError("INSTANCE_FAILED", `pod ${id}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (rec.ended) throw new FizzError("INSTANCE_FAILED", `pod ${id} ended while starting`);
    const seen = this.watch.get(id);
    // From the pod itself, so a claimed pod (started by an earlier poolkeeper) works too.
    const specializeToken = specializeTokenOf(seen);
    rec.instance = {
      id,
      address,
      environment: ref,
      startedAt: startedAtOf(seen ?? {}),
      ...(specializeToken !== undefined ? { specializeToken } : {}),
    };
    this.log.debug({ instance: id, address, claimed: claimed !== undefined }, "pod ready");
    // From the pod's first line: what the loader printed while starting is read too.
    this.logs.follow(rec.instance);
    return rec.instance;
  }

  async kill(id: string, reason: string): Promise<boolean> {
    const rec = this.pods.get(id);
    if (!rec) return false;
    rec.killReason ??= reason;
    if (!(await this.api.delete(id, this.graceSeconds(), reason))) {
      // Not deleted (the API refused or is away): forget it anyway so the pool moves on; a
      // restarted poolkeeper finds the pod again and decides anew.
      this.end(rec, reason, null);
      return true;
    }
    // The watch reports deletionTimestamp (or the deletion) and end() resolves `gone`.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([rec.gone, new Promise((r) => (timer = setTimeout(r, KILL_CONFIRM_MS)))]);
    clearTimeout(timer);
    if (!rec.ended) this.end(rec, reason, null);
    return true;
  }

  onExit(cb: (instance: BackendInstance, info: ExitInfo) => void): void {
    this.exitListeners.push(cb);
  }

  /** Every line of every instance's pod, followed through the API server (kube-logs.ts). */
  onOutput(
    cb: (instance: BackendInstance, stream: OutputStream, line: string, writtenAt?: number) => void,
  ): void {
    this.outputListeners.push(cb);
  }

  list(): BackendInstance[] {
    const out: BackendInstance[] = [];
    for (const r of this.pods.values()) if (r.instance && !r.ended) out.push(r.instance);
    return out;
  }

  releaseUnclaimed(): void {
    for (const name of this.unclaimed.drain())
      this.removePod(name, "no environment claimed it (deleted, changed, or more than poolSize)");
  }

  recordSpecialized(instance: Instance): void {
    const rec = this.pods.get(instance.id);
    if (!rec || !instance.function) return;
    const body = specializedPatch({
      function: instance.function,
      concurrency: instance.concurrency ?? 1,
      specializedAt: instance.specializedAt ?? Date.now(),
    });
    const p = this.api.patch(instance.id, body, () => rec.ended).then(() => undefined);
    this.patches.add(p);
    void p.finally(() => this.patches.delete(p));
  }

  /** Adopted pods' output is read once `ready` settles (their function's secrets are recorded). */
  adoptedReady(ready: Promise<unknown>): void {
    this.releaseAdoptedLogs(ready);
  }

  connected(): boolean {
    return this.watch.connected();
  }

  /**
   * The cluster's part (the registry's objects come first, function-config.ts): Secrets and ConfigMaps of the pods' namespace labelled for the function's Fizz namespace
   * (kube-function-config.ts says why the label); no API call when the function names none.
   */
  readConfig(
    namespace: string,
    secrets: readonly string[],
    configmaps: readonly string[],
  ): Promise<FunctionConfig> {
    if (secrets.length === 0 && configmaps.length === 0)
      return Promise.resolve({ secrets: {}, configmaps: {} });
    return this.config(namespace, secrets, configmaps);
  }

  /** Stops watching. Pods stay (the next poolkeeper adopts them); pending labels are written first. */
  async close(): Promise<void> {
    this.closing = true;
    for (const r of this.pods.values()) r.abandon("the kubernetes backend is stopping");
    await Promise.race([Promise.allSettled([...this.patches]), sleep(5_000)]);
    this.logs.close();
    await this.watch.stop();
  }

  private adoptAll(): AdoptedInstance[] {
    const found = sortFoundPods(this.watch.list());
    for (const { name, reason } of found.remove) this.removePod(name, reason);
    for (const name of found.warm) this.unclaimed.add(name);
    const adopted = found.specialized.map((f): AdoptedInstance => {
      const rec = this.track(f.name, f.environment);
      // Masked in its output like a specialized pod's (the pod spec is where it is written down).
      const specializeToken = specializeTokenOf(this.watch.get(f.name));
      rec.instance = {
        id: f.name,
        address: f.address,
        environment: f.environment,
        startedAt: f.startedAt,
        ...(specializeToken !== undefined ? { specializeToken } : {}),
      };
      // From now on: what it printed before was read by the poolkeeper that ran then.
      this.logs.follow(rec.instance, new Date().toISOString(), this.adoptedLogs);
      const { function: fn, concurrency, specializedAt } = f;
      return { instance: rec.instance, function: fn, concurrency, specializedAt };
    });
    this.log.info(
      { specialized: adopted.length, warm: found.warm.length, removed: found.remove.length },
      "pods found at start",
    );
    return adopted;
  }

  private changed(pod: V1Pod): void {
    const name = pod.metadata?.name;
    if (!name) return;
    const c = conditionOf(pod);
    const rec = this.pods.get(name);
    if (!rec) {
      if (c.kind === "ended" && this.unclaimed.delete(name) && !pod.metadata?.deletionTimestamp)
        this.removePod(name, c.reason);
      return;
    }
    if (c.kind !== "ended") return rec.observe(c);
    if (pod.metadata?.deletionTimestamp) return this.end(rec, c.reason, c.code);
    // Failed or Succeeded by itself: its last lines (a crash's stack trace) are read before the
    // pool hears it died, and before the pod (and so its log) is deleted.
    if (rec.draining) return;
    rec.draining = true;
    const drained = rec.instance ? this.logs.drained(name, LOG_DRAIN_MS) : Promise.resolve();
    void drained.then(() => {
      this.end(rec, c.reason, c.code);
      // restartPolicy Never leaves a Failed pod behind; it has told us what it had to.
      this.removePod(name, c.reason);
    });
  }

  private deleted(pod: V1Pod): void {
    const name = pod.metadata?.name;
    if (!name) return;
    this.unclaimed.delete(name);
    const rec = this.pods.get(name);
    if (rec) this.end(rec, `pod ${name} was deleted`, null);
    setTimeout(() => this.logs.stop(name), LOG_AFTER_DELETE_MS).unref();
  }

  /** For the log follow: is the pod's container still writing? */
  private logState(name: string): PodLogState {
    const pod = this.watch.get(name);
    if (!pod) return "gone";
    const phase = pod.status?.phase;
    const cs = pod.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
    return phase === "Failed" || phase === "Succeeded" || cs?.state?.terminated
      ? "finished"
      : "running";
  }

  private track(id: string, environment: EnvironmentRef): PodRecord {
    const rec = new PodRecord(id, environment);
    this.pods.set(id, rec);
    return rec;
  }

  /** Once per pod: forgets it, fails a waiting spawn, and reports the exit of a reported instance. */
  private end(rec: PodRecord, reason: string, code: number | null): void {
    if (!rec.finish(reason)) return;
    this.pods.delete(rec.id);
    if (!rec.instance) return;
    const info: ExitInfo = {
      code,
      signal: null,
      expected: rec.killReason !== undefined,
      reason: rec.killReason ?? reason,
    };
    for (const cb of this.exitListeners) {
      try {
        cb(rec.instance, info);
      } catch (err) {
        this.log.error({ err }, "exit listener failed");
      }
    }
  }

  private removePod(name: string, reason: string): void {
    this.log.info({ pod: name, reason }, "deleting pod");
    void this.api.delete(name, this.graceSeconds(), reason);
  }

  private graceSeconds(): number {
    return Math.ceil(this.opts.killGraceMs / 1000);
  }
}
