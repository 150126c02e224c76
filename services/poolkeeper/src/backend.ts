import type { Environment, EnvironmentRef, FunctionRef, Instance } from "@fizz/events";
import type { FunctionConfig } from "./function-config";

/**
 * Where instances run. The pool decides how many and when; a backend only starts, stops and
 * watches them. Kept small on purpose: the kubernetes backend (pods labelled by environment) fits
 * behind the same seven calls (unsupported, spawn, kill, onExit, onOutput, list, close); the
 * optional ones at the end serve only a backend whose instances outlive the poolkeeper.
 */
export type BackendKind = "process" | "kubernetes";

export interface BackendInstance {
  /** Unique for the backend's lifetime; the runtime gets it as FIZZ_INSTANCE_ID. */
  id: string;
  /** Base URL of the runtime, e.g. http://127.0.0.1:41234. */
  address: string;
  environment: EnvironmentRef;
  startedAt: number;
  /** OS process id (process backend), for diagnostics and tests. */
  pid?: number;
  /** The uid it runs as, when the process backend gave it its own. */
  uid?: number;
  /** Its own directory (FIZZ_WORKDIR), 0700 and owned by `uid` (process backend). */
  dir?: string;
  /**
   * Sent with POST /v2/specialize; the runtime refuses a specialize without it, so a function
   * that finds another instance's port cannot load its own code there.
   */
  specializeToken?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
  /** True when the exit follows our own kill(): not worth a "died" event. */
  expected: boolean;
  /** Why: the kill reason, or a description of the crash with the last stderr line. */
  reason: string;
}

export type OutputStream = "stdout" | "stderr";

export interface SpawnOptions {
  /**
   * Started for a specialize that is already waiting (the empty-pool cold start), not for the
   * pool: the runtime may skip work that only pays off for an instance that waits (its warm-up).
   */
  taken?: boolean;
}

/** A specialized instance a backend found running at start (a pod left by an earlier poolkeeper). */
export interface AdoptedInstance {
  instance: BackendInstance;
  function: FunctionRef;
  concurrency: number;
  specializedAt: number;
}

export interface Backend {
  readonly kind: BackendKind;
  /** Why this backend cannot run the environment, or undefined when it can. */
  unsupported(env: Environment): string | undefined;
  /**
   * Starts one instance and resolves once it is ready: its GET /healthz answers, or (process
   * backend, our own loaders) it announced it on a pipe only it holds. Rejects (and leaves nothing
   * running) when it exits or does not answer within the spawn timeout.
   */
  spawn(env: Environment, opts?: SpawnOptions): Promise<BackendInstance>;
  /** Stops it (SIGTERM, then SIGKILL after a grace period); resolves when it is gone. False if unknown. */
  kill(id: string, reason: string): Promise<boolean>;
  /** Called once per instance that was returned by spawn() and then exited, for whatever reason. */
  onExit(cb: (instance: BackendInstance, info: ExitInfo) => void): void;
  /**
   * Called for every line the instance writes. `writtenAt` (epoch ms) when the backend delivers
   * lines late and knows when each was written (Kubernetes: the log's timestamp).
   */
  onOutput(
    cb: (instance: BackendInstance, stream: OutputStream, line: string, writtenAt?: number) => void,
  ): void;
  list(): BackendInstance[];
  /**
   * Kills every instance it started (spawning ones too) and waits until they are gone; a backend
   * whose instances outlive the poolkeeper (`instancesOutliveClose`) leaves them running instead.
   */
  close(): Promise<void>;

  /**
   * Instances that survive a poolkeeper restart (pods): close() leaves them for the next
   * poolkeeper to adopt, so stopping is not a reason to tell the scheduler they are gone.
   */
  readonly instancesOutliveClose?: boolean;
  /**
   * Backends with instances that outlive the poolkeeper: finds them before any spawn. Resolves with
   * the specialized ones, which the pool adopts as they are; warm ones found are handed out by
   * spawn() instead of creating new ones, so a restart creates no duplicates.
   */
  start?(signal: AbortSignal): Promise<AdoptedInstance[]>;
  /** The adopted instances' output is read once `ready` settles (their secrets are known for masking). */
  adoptedReady?(ready: Promise<unknown>): void;
  /** After the first environment listing: removes the warm instances found at start that no pool claimed. */
  releaseUnclaimed?(): void;
  /** Writes a specialization down where the instance lives (pod labels), for adoption after a restart. */
  recordSpecialized?(instance: Instance): void;
  /** False while the backend cannot see its instances (watch down); for /readyz. */
  connected?(): boolean;
  /**
   * A function's secrets and configmaps, for a backend that keeps them itself (Kubernetes Secrets
   * and ConfigMaps); without it they come from the registry. Throws MISSING_CONFIG naming one.
   */
  readConfig?(
    namespace: string,
    secrets: readonly string[],
    configmaps: readonly string[],
  ): Promise<FunctionConfig>;
}
