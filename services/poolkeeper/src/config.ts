import path from "node:path";
import { fileURLToPath } from "node:url";
import { int, loadCommon, oneOf, str, type CommonConfig, type Env } from "@fizz/kit";

export interface PoolkeeperConfig extends CommonConfig {
  backend: "process";
  /** Ops server (/healthz, /readyz, /metrics); port 0 picks a free one. */
  host: string;
  port: number;
  /** Instances get their working directories under `<workDir>/instances/<id>`. */
  workDir: string;
  runtimesDir: string;
  python: string;
  specializeTimeoutMs: number;
  spawnTimeoutMs: number;
  killGraceMs: number;
  /** Consecutive spawn failures (or early deaths) before an environment's refills pause. */
  maxSpawnFailures: number;
  failureCooldownMs: number;
  /**
   * The environment instances inherit: the poolkeeper's own, minus every FIZZ_* variable (its NATS
   * and Redis URLs are not the function's business, and FIZZ_WORKDIR means something else there).
   */
  instanceEnv: Record<string, string>;
}

/** services/poolkeeper/src → the repository's runtimes/ folder. */
export const DEFAULT_RUNTIMES_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../runtimes",
);

export function loadConfig(env: Env, cwd: string = process.cwd()): PoolkeeperConfig {
  const instanceEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env))
    if (v !== undefined && !k.startsWith("FIZZ_")) instanceEnv[k] = v;
  return {
    ...loadCommon(env),
    backend: oneOf(env, "FIZZ_POOLKEEPER_BACKEND", "process", ["process"] as const),
    host: str(env, "FIZZ_POOLKEEPER_HOST", "127.0.0.1"),
    port: int(env, "FIZZ_POOLKEEPER_PORT", 0, 0, 65535),
    workDir: path.resolve(cwd, str(env, "FIZZ_WORKDIR", ".fizz/work")),
    runtimesDir: path.resolve(cwd, str(env, "FIZZ_RUNTIMES_DIR", DEFAULT_RUNTIMES_DIR)),
    python: str(env, "FIZZ_PYTHON", "python3"),
    specializeTimeoutMs: int(env, "FIZZ_SPECIALIZE_TIMEOUT_MS", 10_000, 1, 600_000),
    spawnTimeoutMs: int(env, "FIZZ_SPAWN_TIMEOUT_MS", 15_000, 1, 600_000),
    killGraceMs: int(env, "FIZZ_KILL_GRACE_MS", 3_000, 0, 600_000),
    maxSpawnFailures: int(env, "FIZZ_POOL_MAX_FAILURES", 5, 1, 1000),
    failureCooldownMs: int(env, "FIZZ_POOL_COOLDOWN_MS", 30_000, 0, 3_600_000),
    instanceEnv,
  };
}
