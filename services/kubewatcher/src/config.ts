import { FizzError } from "@fizz/events";
import { bool, int, loadCommon, optionalStr, str, type CommonConfig, type Env } from "@fizz/kit";

export interface KubewatcherConfig extends CommonConfig {
  /** Ops server (/healthz, /readyz, /metrics); port 0 picks a free one. */
  host: string;
  port: number;
  /** A kubeconfig file; unset: the in-cluster service account, else the default kubeconfig. */
  kubeconfig: string | undefined;
  /** KUBERNETES_SERVICE_HOST is set: running in a pod. */
  inCluster: boolean;
  /**
   * Triggers may watch namespaces other than their own, and cluster-scoped resources. Off by
   * default: a tenant's trigger must not see another tenant's objects.
   */
  clusterScope: boolean;
  /** A leader that stops renewing its key loses it after this long; a follower then takes over. */
  leaderTtlMs: number;
  /** How often a trigger whose resource the apiserver does not serve is looked up again. */
  resolveRetryMs: number;
  /** The NATS KV bucket of resume points and snapshots; `<bucket>_leader` holds the leader key. */
  bucket: string;
}

export function loadConfig(env: Env): KubewatcherConfig {
  return {
    ...loadCommon(env),
    host: str(env, "FIZZ_KUBEWATCHER_HOST", "127.0.0.1"),
    port: int(env, "FIZZ_KUBEWATCHER_PORT", 0, 0, 65535),
    kubeconfig: optionalStr(env, "FIZZ_KUBECONFIG"),
    inCluster: Boolean(env.KUBERNETES_SERVICE_HOST),
    clusterScope: bool(env, "FIZZ_WATCH_CLUSTER_SCOPE", false),
    leaderTtlMs: int(env, "FIZZ_KUBEWATCHER_LEADER_TTL_MS", 15_000, 1_000, 600_000),
    resolveRetryMs: int(env, "FIZZ_KUBEWATCHER_RESOLVE_RETRY_MS", 30_000, 100, 3_600_000),
    bucket: bucketName(env, "FIZZ_KUBEWATCHER_BUCKET", "fizz_kubewatcher"),
  };
}

function bucketName(env: Env, name: string, fallback: string): string {
  const v = str(env, name, fallback);
  // `_leader` is appended, so leave room for it within NATS's stream name limits.
  if (!/^[A-Za-z0-9_-]{1,48}$/.test(v)) {
    throw new FizzError(
      "VALIDATION_FAILED",
      `${name}: must be 1-48 letters, digits, '_' or '-', got "${v}"`,
      { field: name },
    );
  }
  return v;
}
