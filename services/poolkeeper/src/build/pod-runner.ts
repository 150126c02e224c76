import { rename, rm } from "node:fs/promises";
import { FizzError, isCompiledRuntime, runtimeOfImage } from "@fizz/events";
import { sleep, type Logger } from "@fizz/kit";
import { canonicalize } from "@fizz/kit/archive";
import { CoreV1Api, type KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { Agent } from "undici";
import { waitHealthy } from "../health";
import { describeKubeError, statusOf } from "../kube-api";
import { resourcesFor, type PodResources } from "../kube-pods";
import { postBuild } from "./pod-client";
import {
  BUILDER_SELECTOR,
  builderImageOf,
  builderPodManifest,
  builderPodName,
  builderPodState,
  isLeftover,
  newBuilderToken,
} from "./pod-runner-pod";
import {
  buildLimits,
  BuildStopped,
  type BuildInput,
  type BuildResult,
  type BuildRunner,
} from "./runner";
import { instanceAgent } from "../instance-http";

export interface PodRunnerOptions {
  kubeConfig: KubeConfig;
  /** The poolkeeper's pod namespace (its Role covers pods there). */
  namespace: string;
  /** Used where the environment names none. */
  resources: PodResources;
  imagePullPolicy: "Always" | "IfNotPresent" | "Never";
  runAsUser: number;
  /** Pod creation until Ready (scheduling and an image pull included). */
  startTimeoutMs: number;
  logger: Logger;
}

const POLL_MS = 500;
const HEALTH_TIMEOUT_MS = 30_000;
/** Leftover builder pods are looked for at most this often (and at the first build). */
const SWEEP_EVERY_MS = 60_000;
/** What the pod may take beyond start and build: the upload, the reply, slow nodes. */
const LIFETIME_SLACK_SECONDS = 120;

/**
 * Builds on the kubernetes backend: one fresh builder pod per build (runtimes/builder/server.mjs
 * in the environment's builder image), so user build code never runs in the poolkeeper and
 * nothing one build leaves behind meets the next. The source goes up in POST /build, the log and
 * the raw deployment come back; the deployment is the pod's word only, so it is canonicalized
 * under the archive rules (kit canonicalize) before anything stores it. The pod is deleted
 * whatever happened; pods a vanished poolkeeper left are deleted by the next sweep once ended or
 * past their deadline.
 */
export class PodBuildRunner implements BuildRunner {
  private readonly core: CoreV1Api;
  private readonly agent = new Agent({ keepAliveTimeout: 4_000, connect: { timeout: 2_000 } });
  /** The health probe's, which is the instances' client (instance-http.ts). */
  private readonly probeAgent = instanceAgent();
  private readonly log: Logger;
  private lastSweep = 0;
  private sweeping: Promise<void> | undefined;

  constructor(private readonly opts: PodRunnerOptions) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.log = opts.logger.child({ component: "build-pods" });
  }

  async build(input: BuildInput): Promise<BuildResult> {
    const limits = buildLimits(input.environment);
    let image: string;
    try {
      image = builderImageOf(input.environment);
    } catch (err) {
      return { ok: false, message: (err as Error).message };
    }
    this.sweepSoon();
    const podName = builderPodName(input.name);
    const token = newBuilderToken();
    const startSeconds = Math.ceil(this.opts.startTimeoutMs / 1000);
    const pod = builderPodManifest(podName, {
      namespace: this.opts.namespace,
      image,
      name: input.name,
      token,
      resources: resourcesFor(input.environment, this.opts.resources),
      imagePullPolicy: this.opts.imagePullPolicy,
      runAsUser: this.opts.runAsUser,
      lifetimeSeconds: startSeconds + limits.timeoutSeconds + LIFETIME_SLACK_SECONDS,
      now: Date.now(),
    });
    const raw = `${input.outFile}.raw`;
    const work = `${input.outFile}.d`;
    input.log.note(`builder pod ${podName} (${image})`);
    try {
      await this.create(pod);
      const started = await this.untilReady(podName, input.signal);
      if (!started.ok) return { ok: false, message: `builder pod ${podName}: ${started.reason}` };
      const stop = whenAborted(input.signal);
      try {
        await waitHealthy(started.address, this.probeAgent, {
          timeoutMs: HEALTH_TIMEOUT_MS,
          exited: stop.promise,
        });
      } finally {
        stop.dispose();
      }
      if (input.signal.aborted) throw new BuildStopped();
      const runtime = runtimeOfImage(input.environment.spec.image) ?? null;
      let reply;
      try {
        reply = await postBuild({
          address: started.address,
          token,
          body: {
            runtime,
            timeoutSeconds: limits.timeoutSeconds,
            ...(input.buildCommand !== undefined ? { buildCommand: input.buildCommand } : {}),
            ...(limits.env ? { env: limits.env } : {}),
          },
          sourceFile: input.sourceFile,
          outFile: raw,
          // The pod's tar.gz is not canonical yet: some room over the limit the result must meet.
          maxBytes: limits.maxDeploymentBytes + Math.ceil(limits.maxDeploymentBytes / 4),
          signal: input.signal,
          dispatcher: this.agent,
        });
      } catch (err) {
        if (input.signal.aborted) throw new BuildStopped();
        if (err instanceof FizzError && err.code === "PAYLOAD_TOO_LARGE")
          return tooLarge(limits.maxDeploymentBytes);
        throw err;
      }
      // The pod's log already holds its own "$ npm ci ..." lines and failure note.
      if (reply.log) input.log.write(reply.log);
      if (!reply.ok) return { ok: false, message: reply.message };
      return await this.canonical(raw, work, input, limits.maxDeploymentBytes);
    } finally {
      await Promise.all([
        rm(raw, { force: true }),
        rm(work, { recursive: true, force: true }),
        this.remove(podName, "build over"),
      ]);
    }
  }

  async close(): Promise<void> {
    await this.sweeping;
    this.probeAgent.destroy();
    await this.agent.close().catch(() => undefined);
  }

  /** The pod's raw deployment, re-checked and packed under the archive rules into outFile. */
  private async canonical(
    raw: string,
    work: string,
    input: BuildInput,
    maxBytes: number,
  ): Promise<BuildResult> {
    try {
      // Stored, not deflated, for Go and C#: inflating a compiled binary is most of its cold start.
      const c = await canonicalize(
        raw,
        work,
        { maxArchiveBytes: maxBytes },
        isCompiledRuntime(runtimeOfImage(input.environment.spec.image)) ? { gzipLevel: 0 } : {},
      );
      await rename(c.path, input.outFile);
      if (c.skipped.length > 0)
        input.log.note(
          `left out of the deployment (links, devices, fifos): ${c.skipped.slice(0, 20).join(", ")}${c.skipped.length > 20 ? ", ..." : ""}`,
        );
      input.log.note(`deployment: ${c.files} files, ${c.size} bytes`);
      return { ok: true, files: c.files };
    } catch (err) {
      if (err instanceof FizzError && err.code === "PAYLOAD_TOO_LARGE") return tooLarge(maxBytes);
      if (err instanceof FizzError && err.code === "ARCHIVE_UNSAFE")
        return { ok: false, message: `deployment refused: ${err.message}` };
      throw err;
    }
  }

  private async create(pod: V1Pod): Promise<void> {
    try {
      await this.core.createNamespacedPod({ namespace: this.opts.namespace, body: pod });
    } catch (err) {
      throw new FizzError(
        "INSTANCE_FAILED",
        `could not create builder pod ${pod.metadata?.name ?? "?"}: ${describeKubeError(err)}`,
        { cause: err },
      );
    }
  }

  /**
   * Polls the pod (list by name: the Role grants list, not get) until it is Ready with a pod IP,
   * ends, cannot start, or startTimeoutMs passes. Throws BuildStopped when the builder stops.
   */
  private async untilReady(
    name: string,
    signal: AbortSignal,
  ): Promise<{ ok: true; address: string } | { ok: false; reason: string }> {
    const deadline = Date.now() + this.opts.startTimeoutMs;
    let why: string | undefined;
    for (;;) {
      if (signal.aborted) throw new BuildStopped();
      let pod: V1Pod | undefined;
      try {
        const list = await this.core.listNamespacedPod({
          namespace: this.opts.namespace,
          fieldSelector: `metadata.name=${name}`,
          labelSelector: BUILDER_SELECTOR,
        });
        pod = list.items[0];
        const s = builderPodState(pod);
        if (s.kind === "ready") return { ok: true, address: s.address };
        if (s.kind === "failed") return { ok: false, reason: s.reason };
        why = s.why;
      } catch (err) {
        why = `the API answered: ${describeKubeError(err)}`;
      }
      if (Date.now() >= deadline)
        return {
          ok: false,
          reason: `not ready within ${this.opts.startTimeoutMs} ms${why ? ` (${why})` : ""}`,
        };
      await sleep(POLL_MS, signal).catch(() => undefined);
    }
  }

  /** Never throws: a pod left behind is found by a later sweep (ended or past its deadline). */
  private async remove(name: string, reason: string): Promise<void> {
    try {
      await this.core.deleteNamespacedPod({
        name,
        namespace: this.opts.namespace,
        gracePeriodSeconds: 0,
      });
    } catch (err) {
      if (statusOf(err) === 404) return;
      this.log.warn(
        { pod: name, reason, err: describeKubeError(err) },
        "could not delete builder pod",
      );
    }
  }

  /** Starts a sweep for leftovers when none ran lately; builds do not wait for it. */
  private sweepSoon(): void {
    if (this.sweeping || Date.now() - this.lastSweep < SWEEP_EVERY_MS) return;
    this.lastSweep = Date.now();
    this.sweeping = this.sweep().finally(() => (this.sweeping = undefined));
  }

  /** Deletes builder pods that ended or are past their deadline, whichever poolkeeper made them. */
  async sweep(): Promise<void> {
    try {
      const list = await this.core.listNamespacedPod({
        namespace: this.opts.namespace,
        labelSelector: BUILDER_SELECTOR,
      });
      const now = Date.now();
      const left = list.items.filter((p) => !p.metadata?.deletionTimestamp && isLeftover(p, now));
      for (const p of left) {
        const name = p.metadata?.name;
        if (!name) continue;
        this.log.info({ pod: name }, "deleting a leftover builder pod");
        await this.remove(name, "leftover");
      }
    } catch (err) {
      this.log.warn({ err: describeKubeError(err) }, "could not list builder pods");
    }
  }
}

function tooLarge(maxBytes: number): BuildResult {
  return { ok: false, message: `output over ${maxBytes} bytes (builder.maxDeploymentBytes)` };
}

/** Resolves when the signal aborts; dispose() drops the listener (the signal outlives builds). */
function whenAborted(signal: AbortSignal): { promise: Promise<void>; dispose: () => void } {
  let onAbort = () => undefined as void;
  const promise = new Promise<void>((resolve) => {
    onAbort = () => resolve();
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  return { promise, dispose: () => signal.removeEventListener("abort", onAbort) };
}
