import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FizzError, LOG_STREAM, parseDuration } from "@fizz/events";
import {
  bool,
  int,
  loadCommon,
  oneOf,
  optionalStr,
  str,
  type CommonConfig,
  type Env,
} from "@fizz/kit";
import { instanceBaseEnv, type IsolationOptions } from "./isolation";
import { defaultInterpreters, type Interpreters } from "./runtime-commands";
import { findGo, goEnvOf } from "./build/steps";
import type { PodResources } from "./kube-pods";

export interface KubernetesBackendConfig {
  /** Where the pods live; the poolkeeper's Role grants pods there and nowhere else. */
  namespace: string;
  /** A kubeconfig file; unset: the in-cluster service account, else the default kubeconfig. */
  kubeconfig: string | undefined;
  /** KUBERNETES_SERVICE_HOST is set: running in a pod. */
  inCluster: boolean;
  /** For environments that name no resources of their own. */
  resources: PodResources;
  imagePullPolicy: "Always" | "IfNotPresent" | "Never";
  /** The uid (and gid, fsGroup) instances run as; never root. */
  runAsUser: number;
  /** Pod creation until Ready: scheduling and an image pull included. */
  startTimeoutMs: number;
}

/**
 * The poolkeeper keeps no state in Redis and never connects to it: code and archives come from the
 * Object Store, secrets from the registry (or the Kubernetes API).
 */
export type PoolkeeperCommonConfig = Omit<CommonConfig, "redisUrl" | "redisPrefix">;

export interface PoolkeeperConfig extends PoolkeeperCommonConfig {
  backend: "process" | "kubernetes";
  /** Ops server (/healthz, /readyz, /metrics); port 0 picks a free one. */
  host: string;
  port: number;
  /** Instances get their working directories under `<workDir>/instances/<id>`. */
  workDir: string;
  runtimesDir: string;
  python: string;
  /** FIZZ_PHP, FIZZ_RUBY, FIZZ_MONO (as root: Debian's /usr/bin ones by default, like python). */
  interpreters: Omit<Interpreters, "python">;
  specializeTimeoutMs: number;
  spawnTimeoutMs: number;
  /**
   * FIZZ_SPAWN_CONCURRENCY: spawns booting at once, cold starts first (spawn-gate.ts); 0 for no
   * limit, the Kubernetes default (pods start on other nodes). Process backend: twice the cores
   * (at least 4): a loader boot is mostly CPU, and a burst of ~100 booting at once on two cores
   * answered no /healthz within the spawn timeout; a few at a time they all come up, in turn.
   */
  spawnConcurrency: number;
  /**
   * FIZZ_SPAWN_QUEUE_TIMEOUT_MS: a cold start queued at the gate this long has lost its caller
   * (the scheduler's specialize timeout, 45 s by default) and is turned away unspawned.
   */
  spawnQueueTimeoutMs: number;
  /** How long after a take its pool refill starts (Pool.refillAfterTake). */
  refillAfterTakeMs: number;
  killGraceMs: number;
  /** Consecutive spawn failures (or early deaths) before an environment's refills pause. */
  maxSpawnFailures: number;
  failureCooldownMs: number;
  /**
   * The variables every instance gets besides its own (PATH, LANG, TZ): never the poolkeeper's
   * environment, which holds the platform's credentials and tokens.
   */
  instanceEnv: Record<string, string>;
  /** Process backend: per-instance uids (when root) and the setpriv wrapper. */
  isolation: IsolationOptions;
  /** FIZZ_ALLOW_ENV_COMMAND: environments may run host commands (spec.command); root-equivalent. */
  allowEnvCommand: boolean;
  /** FIZZ_ARCHIVE_CACHE_BYTES: package archives kept under `<workDir>/archive-cache` (0: none). */
  archiveCacheBytes: number;
  /** FIZZ_METRICS_MAX_FUNCTIONS: functions with their own metric series; later ones are `_other`. */
  metricsMaxFunctions: number;
  /** Package builds: at most `concurrency` at once (0: none here), each in a fresh dir under `dir`. */
  build: {
    concurrency: number;
    dir: string;
    /** The Go toolchain Go builds use (FIZZ_GO, else /usr/local/go/bin/go, else Debian's). */
    go: string | undefined;
    /** GOPROXY, GOSUMDB, GONOSUMDB, GOPRIVATE of the poolkeeper's environment. */
    goEnv: Record<string, string>;
  };
  kubernetes: KubernetesBackendConfig;
  /** Function logs: each instance's budget, and the limits of the FIZZ_LOGS stream. */
  logs: LogConfig;
}

export interface LogConfig {
  /** FIZZ_LOG_LINES_PER_SECOND / FIZZ_LOG_BYTES_PER_SECOND: per instance; more is dropped and counted. */
  linesPerSecond: number;
  bytesPerSecond: number;
  /** FIZZ_LOG_BURST_SECONDS: seconds' worth a quiet instance may print at once. */
  burstSeconds: number;
  /** FIZZ_LOG_TOTAL_LINES_PER_SECOND / _BYTES_PER_SECOND: all instances of this poolkeeper together. */
  totalLinesPerSecond: number;
  totalBytesPerSecond: number;
  /** FIZZ_LOG_MAX_AGE (a duration: 72h, 30m), FIZZ_LOG_MAX_BYTES, FIZZ_LOG_MAX_LINES_PER_FUNCTION. */
  maxAgeMs: number;
  maxBytes: number;
  maxLinesPerFunction: number;
  /** FIZZ_LOG_ECHO (false): function lines also in the poolkeeper's log at info (`npm start` sets it). */
  echo: boolean;
}

/** services/poolkeeper/src → the repository's runtimes/ folder. */
/**
 * The process backend's delay between a take and its refill (Pool.refillAfterTake): longer than a
 * warm-pool first call takes after the specialize reply on a loaded 2-core machine (~5-15 ms), far
 * shorter than a refill takes to come up (~0.3-1 s), so a burst that drains the pool waits no
 * longer for it in any way that shows.
 */
const DEFAULT_REFILL_AFTER_TAKE_MS = 30;

export const DEFAULT_RUNTIMES_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../runtimes",
);

/** What loadConfig needs to know about the process it configures; tests pass their own. */
export interface HostFacts {
  isRoot: boolean;
  exists(file: string): boolean;
  /** os.availableParallelism(); 1 when absent. */
  cpus?: number;
}

/** util-linux prlimit, which sets the RLIMIT_NPROC of instances and builds (IsolationOptions). */
const PRLIMIT = "/usr/bin/prlimit";

const THIS_HOST: HostFacts = {
  isRoot: process.getuid?.() === 0,
  exists: existsSync,
  cpus: availableParallelism(),
};

export function loadConfig(
  env: Env,
  cwd: string = process.cwd(),
  host: HostFacts = THIS_HOST,
): PoolkeeperConfig {
  const setprivPath = str(env, "FIZZ_SETPRIV", "/usr/bin/setpriv");
  const setpriv = setprivPath !== "none" && host.exists(setprivPath) ? setprivPath : undefined;
  const backend = oneOf(env, "FIZZ_POOLKEEPER_BACKEND", "process", [
    "process",
    "kubernetes",
  ] as const);
  if (backend === "process" && host.isRoot && !setpriv)
    throw bad(
      "FIZZ_SETPRIV",
      `"${setprivPath}" not found: running as root, instances must drop to their own uid with util-linux setpriv`,
    );
  const uidBase = int(env, "FIZZ_INSTANCE_UID_BASE", 200_000, 2, 2_000_000_000);
  const uidCount = int(env, "FIZZ_INSTANCE_UID_COUNT", 10_000, 1, 1_000_000);
  const uidLockDir = path.resolve(
    cwd,
    str(env, "FIZZ_INSTANCE_UID_LOCKS", "/run/fizz/instance-uids"),
  );
  // RLIMIT_NPROC per instance uid, 0 = none. It counts threads: a Node instance has ~7-11, Go and
  // Mono a few tens, and a function may start a few subprocesses with their own pools; 256 leaves
  // that room many times over and still stops a fork bomb at a few hundred tasks per instance.
  const nproc = int(env, "FIZZ_INSTANCE_NPROC", 256, 0, 4_194_304);
  // RLIMIT_NPROC per build uid, 0 = none. Builds need far more tasks than instances, threads
  // counted: `go build` runs up to one compile per core at once (-p = GOMAXPROCS), each with a
  // few to tens of threads (backend workers, GC workers on idle cores) besides the go command's
  // own (measured: a net/http program from a cold cache peaks at ~450-550 tasks with -p and
  // GOMAXPROCS 64, ~135 with 16); an npm install runs node (~11 threads) and install scripts with
  // their own pools. 4096 leaves a 64-core host that room several times over and still stops a
  // fork bomb at a few thousand tasks per build, before it fills the host's pid space (pid_max:
  // 32768 on older kernels).
  const buildNproc = int(env, "FIZZ_BUILD_NPROC", 4096, 0, 4_194_304);
  // Debian's interpreters when root: usable by any uid, unlike a pyenv build in root's home.
  const { python, ...interpreters } = defaultInterpreters(env, host);
  const runtimesDir = path.resolve(cwd, str(env, "FIZZ_RUNTIMES_DIR", DEFAULT_RUNTIMES_DIR));
  return {
    ...commonOf(env),
    backend,
    host: str(env, "FIZZ_POOLKEEPER_HOST", "127.0.0.1"),
    port: int(env, "FIZZ_POOLKEEPER_PORT", 0, 0, 65535),
    workDir: path.resolve(cwd, str(env, "FIZZ_WORKDIR", ".fizz/work")),
    runtimesDir,
    python,
    interpreters,
    specializeTimeoutMs: int(env, "FIZZ_SPECIALIZE_TIMEOUT_MS", 10_000, 1, 600_000),
    spawnTimeoutMs: int(env, "FIZZ_SPAWN_TIMEOUT_MS", 15_000, 1, 600_000),
    spawnConcurrency: int(
      env,
      "FIZZ_SPAWN_CONCURRENCY",
      backend === "process" ? Math.max(2, host.cpus ?? 1) * 2 : 0,
      0,
      10_000,
    ),
    spawnQueueTimeoutMs: int(env, "FIZZ_SPAWN_QUEUE_TIMEOUT_MS", 40_000, 1, 600_000),
    // Pods start on other nodes: nothing here to keep out of the first call's way.
    refillAfterTakeMs: int(
      env,
      "FIZZ_REFILL_AFTER_TAKE_MS",
      backend === "process" ? DEFAULT_REFILL_AFTER_TAKE_MS : 0,
      0,
      60_000,
    ),
    killGraceMs: int(env, "FIZZ_KILL_GRACE_MS", 3_000, 0, 600_000),
    maxSpawnFailures: int(env, "FIZZ_POOL_MAX_FAILURES", 5, 1, 1000),
    failureCooldownMs: int(env, "FIZZ_POOL_COOLDOWN_MS", 30_000, 0, 3_600_000),
    instanceEnv: instanceBaseEnv(env),
    isolation: {
      uids: host.isRoot
        ? {
            base: uidBase,
            count: uidCount,
            lockDir: uidLockDir,
          }
        : undefined,
      setpriv,
      // The uid just below the range is the kill pass's own (uid-cleanup.ts): nothing may run as it.
      // Its lock, in the root-only directory the host's poolkeepers share, keeps the passes (all
      // with that real uid, so each could kill another) from running at once.
      ...(host.isRoot
        ? {
            shieldedKill: {
              python,
              script: path.join(runtimesDir, "spawner", "fizz_spawner.py"),
              ruid: uidBase - 1,
              lock: path.join(uidLockDir, "kill-pass"),
            },
          }
        : {}),
      // Only where instances get their own uid (the limit counts all of a uid's processes).
      ...(host.isRoot && nproc > 0
        ? { nproc: { limit: nproc, prlimit: host.exists(PRLIMIT) ? PRLIMIT : undefined } }
        : {}),
      // The same rule for builds, which run as uids of the same pool (build/sandbox.ts).
      ...(host.isRoot && buildNproc > 0
        ? {
            buildNproc: { limit: buildNproc, prlimit: host.exists(PRLIMIT) ? PRLIMIT : undefined },
          }
        : {}),
    },
    allowEnvCommand: bool(env, "FIZZ_ALLOW_ENV_COMMAND", false),
    archiveCacheBytes: int(env, "FIZZ_ARCHIVE_CACHE_BYTES", 1024 ** 3, 0, 2 ** 50),
    metricsMaxFunctions: int(env, "FIZZ_METRICS_MAX_FUNCTIONS", 2000, 1, 1_000_000),
    build: {
      concurrency: int(env, "FIZZ_BUILD_CONCURRENCY", backend === "process" ? 1 : 2, 0, 64),
      dir: path.resolve(
        cwd,
        str(env, "FIZZ_BUILD_DIR", path.join(str(env, "FIZZ_WORKDIR", ".fizz/work"), "builds")),
      ),
      go: findGo(env, (f) => host.exists(f)),
      goEnv: goEnvOf(env),
    },
    kubernetes: {
      namespace: dnsLabel(env, "FIZZ_POOLKEEPER_NAMESPACE", "fizz"),
      kubeconfig: optionalStr(env, "FIZZ_KUBECONFIG"),
      inCluster: Boolean(env.KUBERNETES_SERVICE_HOST),
      resources: {
        requests: quantities(env, {
          cpu: ["FIZZ_POD_CPU_REQUEST", "50m"],
          memory: ["FIZZ_POD_MEMORY_REQUEST", "64Mi"],
        }),
        limits: quantities(env, {
          cpu: ["FIZZ_POD_CPU_LIMIT", "1"],
          memory: ["FIZZ_POD_MEMORY_LIMIT", "256Mi"],
        }),
      },
      imagePullPolicy: oneOf(env, "FIZZ_POD_IMAGE_PULL_POLICY", "IfNotPresent", [
        "Always",
        "IfNotPresent",
        "Never",
      ] as const),
      runAsUser: int(env, "FIZZ_POD_RUN_AS_USER", 65532, 1, 2_147_483_647),
      startTimeoutMs: int(env, "FIZZ_POD_START_TIMEOUT_MS", 120_000, 1, 3_600_000),
    },
    logs: logConfig(env),
  };
}

function logConfig(env: Env): LogConfig {
  const age = str(env, "FIZZ_LOG_MAX_AGE", "");
  const maxAgeMs = age === "" ? LOG_STREAM.maxAgeMs : parseDuration(age);
  if (maxAgeMs === undefined)
    throw bad("FIZZ_LOG_MAX_AGE", `"${age}" is not a duration (like 72h, 30m or 1h30m)`);
  return {
    linesPerSecond: int(env, "FIZZ_LOG_LINES_PER_SECOND", 1000, 1, 1_000_000),
    bytesPerSecond: int(env, "FIZZ_LOG_BYTES_PER_SECOND", 1024 * 1024, 1, 2 ** 40),
    burstSeconds: int(env, "FIZZ_LOG_BURST_SECONDS", 2, 1, 3600),
    totalLinesPerSecond: int(env, "FIZZ_LOG_TOTAL_LINES_PER_SECOND", 20_000, 1, 10_000_000),
    totalBytesPerSecond: int(env, "FIZZ_LOG_TOTAL_BYTES_PER_SECOND", 16 * 1024 * 1024, 1, 2 ** 40),
    maxAgeMs,
    maxBytes: int(env, "FIZZ_LOG_MAX_BYTES", LOG_STREAM.maxBytes, 1024 * 1024, 2 ** 50),
    maxLinesPerFunction: int(
      env,
      "FIZZ_LOG_MAX_LINES_PER_FUNCTION",
      LOG_STREAM.maxMsgsPerSubject,
      1,
      1_000_000_000,
    ),
    echo: bool(env, "FIZZ_LOG_ECHO", false),
  };
}

/** The shared settings without Redis: FIZZ_REDIS_* is not even read, so a stale one cannot fail a start. */
function commonOf(env: Env): PoolkeeperCommonConfig {
  const noRedis: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) if (!k.startsWith("FIZZ_REDIS_")) noRedis[k] = v;
  const { redisUrl: _url, redisPrefix: _prefix, ...rest } = loadCommon(noRedis);
  return rest;
}

function dnsLabel(env: Env, name: string, fallback: string): string {
  const v = str(env, name, fallback);
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v))
    throw bad(name, `"${v}" is not a Kubernetes namespace name (DNS-1123 label)`);
  return v;
}

/** A Kubernetes quantity: 100m, 0.5, 128Mi, 1G. */
const QUANTITY = /^[0-9]+(\.[0-9]+)?(m|k|[KMGTPE]i?)?$/;

function bad(name: string, why: string): FizzError {
  return new FizzError("VALIDATION_FAILED", `${name}: ${why}`, { field: name });
}

/** Each resource from its variable; `none` leaves that resource unset. */
function quantities(
  env: Env,
  vars: { cpu: [string, string]; memory: [string, string] },
): { cpu?: string; memory?: string } {
  const out: { cpu?: string; memory?: string } = {};
  for (const key of ["cpu", "memory"] as const) {
    const [name, fallback] = vars[key];
    const v = str(env, name, fallback).trim();
    if (v === "" || v === "none") continue;
    if (!QUANTITY.test(v))
      throw bad(name, `"${v}" is not a Kubernetes quantity (e.g. 100m, 0.5, 128Mi) or "none"`);
    out[key] = v;
  }
  return out;
}
