import { tmpdir } from "node:os";
import { ARCHIVE_MAX_BYTES, FizzError, subjects } from "@fizz/events";
import {
  bool,
  int,
  loadCommon,
  oneOf,
  optionalStr,
  str,
  url,
  type CommonConfig,
  type Env,
} from "@fizz/kit";
import { loadAuthConfig, type AuthConfig } from "./auth";

export const BACKENDS = ["process", "kubernetes"] as const;
export type Backend = (typeof BACKENDS)[number];

/** AuthConfig: FIZZ_ADMIN_TOKEN, FIZZ_READ_TOKEN, FIZZ_AUTH_DISABLED, FIZZ_CORS_ORIGINS, FIZZ_METRICS_PUBLIC. */
/** Reading function logs (`logs-http.ts`). */
export interface LogsConfig {
  /** FIZZ_LOG_FOLLOWS_MAX, default 64: open `follow` answers per registry; more get 503. */
  logFollowsMax: number;
}

function loadLogsConfig(env: Env): LogsConfig {
  return { logFollowsMax: int(env, "FIZZ_LOG_FOLLOWS_MAX", 64, 1, 10_000) };
}

/** List answers' bytes of objects (list-params.ts ListBounds), REST only: NATS uses max_payload. */
export interface ListConfig {
  /**
   * FIZZ_LIST_PAGE_MAX_BYTES, default 4 MiB: a REST page ends before the object that would take
   * its objects past this (always at least one object), whatever its `limit`.
   */
  listPageMaxBytes: number;
  /**
   * FIZZ_LIST_ALL_MAX_BYTES, default 32 MiB: a REST listing without `limit`/`continue` past this
   * answers 400 LIST_TOO_LARGE (the caller must page). 10,000 functions are ~5 MB.
   */
  listAllMaxBytes: number;
}

const MIB = 1024 * 1024;

function loadListConfig(env: Env): ListConfig {
  return {
    listPageMaxBytes: int(env, "FIZZ_LIST_PAGE_MAX_BYTES", 4 * MIB, 1024, 256 * MIB),
    listAllMaxBytes: int(env, "FIZZ_LIST_ALL_MAX_BYTES", 32 * MIB, 1024, 1024 * MIB),
  };
}

export interface RegistryConfig extends CommonConfig, AuthConfig, LogsConfig, ListConfig {
  /** FIZZ_REGISTRY_HOST, default 127.0.0.1. */
  host: string;
  /** FIZZ_REGISTRY_PORT, default 8081; 0 picks a free port (tests). */
  port: number;
  /** FIZZ_CODE_MAX_BYTES, default 8 MiB: the decoded size of one function's code. */
  codeMaxBytes: number;
  /**
   * FIZZ_BACKEND, default process. On the process backend an environment image must name a local
   * runtime (or give a command), otherwise the poolkeeper could never start it.
   */
  backend: Backend;
  /**
   * FIZZ_SYNC_TIMEOUT_MS, default 2000: how long a function or HTTP trigger write waits for every
   * live gateway to confirm it applied the change (the update barrier) before answering anyway.
   */
  syncTimeoutMs: number;
  /**
   * FIZZ_WATCH_CLUSTER_SCOPE, default false: a watch trigger watches only its own namespace unless
   * the operator allows cluster scope (the kubewatcher then needs RBAC for every namespace).
   */
  watchClusterScope: boolean;
  /**
   * FIZZ_ALLOW_ENV_COMMAND, default false: may an environment carry a `command`, which the process
   * backend runs on the host? Root-equivalent for anyone who can write environments.
   */
  allowEnvCommand: boolean;
  /**
   * FIZZ_REGISTRY_WORKDIR, default the OS temp dir: archive uploads are spooled and canonicalized
   * here (a fresh directory per upload, removed afterwards). Needs room for two archives per
   * concurrent upload; on Kubernetes an emptyDir (the root filesystem is read-only).
   */
  workDir: string;
  /** FIZZ_ARCHIVE_MAX_BYTES, default ARCHIVE_MAX_BYTES (256 MiB): largest upload, and canonical form. */
  archiveMaxBytes: number;
  /**
   * FIZZ_SECRETS_KEY_FILE: the AES-256 key secret values are encrypted with at rest (32 bytes, raw
   * or base64 text). Unset: the registry refuses to store secrets (UNAVAILABLE naming this).
   */
  secretsKeyFile: string | undefined;
  /**
   * FIZZ_PERSIST_KNOWN_TEXTS, default true: keep the digests of stored texts found readable and
   * canonical across restarts (known-persist.ts), sealed with a key derived from
   * FIZZ_SECRETS_KEY_FILE (without one, nothing is persisted). false: every start checks every
   * stored object again.
   */
  persistKnownTexts: boolean;
  /** FIZZ_CONSOLE_DIR: the built web console served at /console/ (unset: no console). */
  consoleDir: string | undefined;
  /**
   * FIZZ_GATEWAY_URL: the gateway the console's invoke form calls functions through (the only
   * place it calls; unset: invoking from the console answers 503 naming this).
   */
  gatewayUrl: string | undefined;
  /** FIZZ_CONSOLE_INVOKE_TIMEOUT_MS, default 30000: how long a console invoke waits for the answer. */
  consoleInvokeTimeoutMs: number;
}

export const DEFAULT_PORT = 8081;
export const DEFAULT_CODE_MAX_BYTES = 8 * 1024 * 1024;
/** The whole upload sits in memory as base64 JSON and in Redis as one string; keep it sane. */
const MAX_CODE_MAX_BYTES = 64 * 1024 * 1024;

export function loadConfig(env: Env): RegistryConfig {
  const common = loadCommon(env);
  try {
    subjects(common.subjectPrefix);
  } catch (err) {
    throw new FizzError("VALIDATION_FAILED", `FIZZ_SUBJECT_PREFIX: ${(err as Error).message}`, {
      field: "FIZZ_SUBJECT_PREFIX",
    });
  }
  return {
    ...common,
    host: str(env, "FIZZ_REGISTRY_HOST", "127.0.0.1"),
    port: int(env, "FIZZ_REGISTRY_PORT", DEFAULT_PORT, 0, 65535),
    codeMaxBytes: int(env, "FIZZ_CODE_MAX_BYTES", DEFAULT_CODE_MAX_BYTES, 1, MAX_CODE_MAX_BYTES),
    backend: oneOf(env, "FIZZ_BACKEND", "process", BACKENDS),
    syncTimeoutMs: int(env, "FIZZ_SYNC_TIMEOUT_MS", 2000, 1, 600_000),
    watchClusterScope: bool(env, "FIZZ_WATCH_CLUSTER_SCOPE", false),
    allowEnvCommand: bool(env, "FIZZ_ALLOW_ENV_COMMAND", false),
    workDir: str(env, "FIZZ_REGISTRY_WORKDIR", tmpdir()),
    archiveMaxBytes: int(env, "FIZZ_ARCHIVE_MAX_BYTES", ARCHIVE_MAX_BYTES, 1, ARCHIVE_MAX_BYTES),
    secretsKeyFile: optionalStr(env, "FIZZ_SECRETS_KEY_FILE"),
    persistKnownTexts: bool(env, "FIZZ_PERSIST_KNOWN_TEXTS", true),
    ...loadLogsConfig(env),
    ...loadListConfig(env),
    consoleDir: optionalStr(env, "FIZZ_CONSOLE_DIR"),
    gatewayUrl:
      optionalStr(env, "FIZZ_GATEWAY_URL") === undefined
        ? undefined
        : url(env, "FIZZ_GATEWAY_URL", "", ["http", "https"]),
    consoleInvokeTimeoutMs: int(env, "FIZZ_CONSOLE_INVOKE_TIMEOUT_MS", 30_000, 1, 600_000),
    // Last, so a typo elsewhere is reported before a missing token.
    ...loadAuthConfig(env),
  };
}
