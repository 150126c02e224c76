import { z } from "zod";
import { dnsLabel } from "./names";
import { AnyObject, CodeRef, KIND_PLURALS } from "./objects";
import { ArchiveRef, ConfigValues, envVarName, sha256Digest } from "./packages";
import { InstanceEvents } from "./subjects";
import { LogStreams } from "./logs";

/** Message bodies (the `data` of an envelope), one schema per message type. */

const kindPlural = z
  .enum(KIND_PLURALS as [string, ...string[]])
  .transform((k) => k as (typeof KIND_PLURALS)[number]);

export const FunctionRef = z.object({
  namespace: dnsLabel,
  name: dnsLabel,
  revision: z.number().int().positive(),
});
export type FunctionRef = z.infer<typeof FunctionRef>;
export const EnvironmentRef = z.object({ namespace: dnsLabel, name: dnsLabel });
export type EnvironmentRef = z.infer<typeof EnvironmentRef>;

export const RegistryChanged = z.object({
  kind: kindPlural,
  op: z.enum(["created", "updated", "deleted"]),
  namespace: dnsLabel,
  name: dnsLabel,
  revision: z.number().int().positive(),
  object: AnyObject,
});
export type RegistryChanged = z.infer<typeof RegistryChanged>;

export const RegistryGetRequest = z.object({
  kind: kindPlural,
  namespace: dnsLabel,
  name: dnsLabel,
});
export type RegistryGetRequest = z.infer<typeof RegistryGetRequest>;
export const RegistryGetReply = z.object({ object: AnyObject });
export type RegistryGetReply = z.infer<typeof RegistryGetReply>;

/** The largest page a list call (REST `?limit=`, NATS `registry.list`) answers. */
export const LIST_MAX_LIMIT = 1000;
/** The page size of a list call that gives `continue` without `limit`. */
export const LIST_DEFAULT_LIMIT = 500;

/**
 * Without a namespace, list every namespace (services warming their caches at start).
 * `limit` asks for one page (at most LIST_MAX_LIMIT objects) in the listing's stable order
 * (namespace, then name); `continue` is the token of the previous page's reply. Without either,
 * every object in one reply, as before: a reply must fit NATS max_payload, so callers that may
 * list thousands of objects page.
 */
export const RegistryListRequest = z.object({
  kind: kindPlural,
  namespace: dnsLabel.optional(),
  limit: z.number().int().positive().optional(),
  continue: z.string().optional(),
});
export type RegistryListRequest = z.infer<typeof RegistryListRequest>;
/**
 * An object a listing left out: stored, but the registry cannot read it (it does not match its
 * schema, e.g. written by a newer registry during a rollout). Plain strings, not DNS labels: the
 * names come from the registry's own index, and one odd name must not make the whole reply
 * unreadable.
 */
export const SkippedObject = z.object({ namespace: z.string(), name: z.string() });
export type SkippedObject = z.infer<typeof SkippedObject>;
/**
 * `skipped`: the objects left out of `items` because the registry could not read them. They
 * still exist, so a service keeps what it holds of them instead of treating them as deleted.
 * Optional: absent from older registries (and when nothing was left out).
 */
export const RegistryListReply = z.object({
  items: z.array(AnyObject),
  skipped: z.array(SkippedObject).optional(),
  /** More objects follow: pass this as the next request's `continue`. Absent on the last page. */
  continue: z.string().optional(),
});
export type RegistryListReply = z.infer<typeof RegistryListReply>;

export const Instance = z.object({
  id: z.string().min(1),
  /** Base URL the gateway proxies to, e.g. http://127.0.0.1:41234 or http://10.1.2.3:8888. */
  address: z.string().url(),
  environment: EnvironmentRef,
  state: z.enum(["warm", "specialized"]),
  function: FunctionRef.optional(),
  concurrency: z.number().int().positive().optional(),
  backend: z.enum(["process", "kubernetes"]),
  startedAt: z.number(),
  specializedAt: z.number().optional(),
});
export type Instance = z.infer<typeof Instance>;

export const Lease = z.object({
  instanceId: z.string().min(1),
  address: z.string().url(),
  function: FunctionRef,
  /** Requests this gateway may have in flight on the instance under this lease. */
  slots: z.number().int().positive(),
  /** The instance's own hard limit (it answers 429 past it). */
  concurrency: z.number().int().positive(),
  timeoutMs: z.number().int().positive(),
  /**
   * `slots` is a first part of this gateway's share of a new instance, answered before the
   * specialization claim recorded every member's share: ask with `topUp` (this token) for the
   * rest instead of excluding the instance when its slots are taken. Only sent to a gateway that
   * asked with `partial`.
   */
  more: z.string().min(1).optional(),
});
export type Lease = z.infer<typeof Lease>;

export const LeaseRequest = z.object({
  namespace: dnsLabel,
  function: dnsLabel,
  gateway: z.string().min(1),
  /** Instances the gateway already holds and found full: the scheduler should not hand them out again. */
  exclude: z.array(z.string()).default([]),
  /** Instances that failed for this gateway (connection refused, 421): the scheduler checks them. */
  failed: z.array(z.string()).default([]),
  /**
   * The function revision the gateway knows (from the change event). A scheduler whose catalog is
   * older refreshes from the registry first, so no lease on old code follows an acknowledged update.
   */
  minRevision: z.number().int().positive().optional(),
  /** The gateway understands a lease answered with `more` (and tops it up). */
  partial: z.boolean().optional(),
  /**
   * The rest of a lease answered with `more`: the same instance with this gateway's whole share
   * (`slots` is the total, not an increment). `claim` is the lease's `more` token.
   */
  topUp: z.object({ instanceId: z.string().min(1), claim: z.string().min(1) }).optional(),
});
export type LeaseRequest = z.infer<typeof LeaseRequest>;
export const LeaseReply = z.object({ lease: Lease });
export type LeaseReply = z.infer<typeof LeaseReply>;

export const UsageReport = z.object({
  gateway: z.string().min(1),
  items: z.array(
    z.object({
      instanceId: z.string().min(1),
      namespace: dnsLabel,
      function: dnsLabel,
      inFlight: z.number().int().nonnegative(),
      served: z.number().int().nonnegative(),
      lastUsedAt: z.number(),
    }),
  ),
});
export type UsageReport = z.infer<typeof UsageReport>;

export const InstancesChanged = z.object({
  namespace: dnsLabel,
  function: dnsLabel,
  /** The function's current revision: leases on older revisions must be dropped. */
  revision: z.number().int().positive(),
  /** Instances gateways must stop sending new requests to (retired, dead, draining). */
  removed: z.array(z.string()),
});
export type InstancesChanged = z.infer<typeof InstancesChanged>;

/**
 * Exactly one of `code` (a single file) and `archive` (a package's deployment, canonical tar.gz).
 * `secrets`/`configmaps` are names in the function's namespace; the poolkeeper resolves them (the
 * registry on the process backend, the Kubernetes API on kubernetes) and fails with MISSING_CONFIG
 * naming the first one it cannot find.
 */
export const SpecializeRequest = z
  .object({
    environment: EnvironmentRef,
    function: FunctionRef,
    code: CodeRef.optional(),
    archive: ArchiveRef.optional(),
    entrypoint: z.string().optional(),
    concurrency: z.number().int().positive(),
    env: z.record(envVarName, z.string()).optional(),
    secrets: z.array(dnsLabel).optional(),
    configmaps: z.array(dnsLabel).optional(),
  })
  .refine((r) => (r.code === undefined) !== (r.archive === undefined), {
    message: "exactly one of code and archive is required",
    path: ["code"],
  });
export type SpecializeRequest = z.infer<typeof SpecializeRequest>;
export const SpecializeReply = z.object({ instance: Instance });
export type SpecializeReply = z.infer<typeof SpecializeReply>;

export const RetireRequest = z.object({ instanceId: z.string().min(1), reason: z.string() });
export type RetireRequest = z.infer<typeof RetireRequest>;
export const RetireReply = z.object({ retired: z.boolean() });
export type RetireReply = z.infer<typeof RetireReply>;

export const PoolkeeperListRequest = z.object({});
export const PoolkeeperListReply = z.object({ instances: z.array(Instance) });
export type PoolkeeperListReply = z.infer<typeof PoolkeeperListReply>;

export const InstanceEventMessage = z.object({
  event: z.enum(InstanceEvents),
  instance: Instance,
  reason: z.string().optional(),
});
export type InstanceEventMessage = z.infer<typeof InstanceEventMessage>;

export const LogLine = z.object({
  namespace: dnsLabel,
  function: dnsLabel,
  /** The function revision the instance was specialized with. */
  revision: z.number().int().nonnegative(),
  instanceId: z.string().min(1),
  stream: z.enum(LogStreams),
  line: z.string(),
  /** Milliseconds since the epoch, when the capturer read the line. */
  ts: z.number(),
  /** The call the line was printed in (from the runtime's call marker), when known. */
  requestId: z.string().max(128).optional(),
});
export type LogLine = z.infer<typeof LogLine>;

/** Registry → every gateway (request-many): per-function history for the console's charts. */
export const GatewayStatsRequest = z.object({
  /**
   * One function per request: an "every function" mode would have a gateway encode up to
   * FIZZ_METRICS_MAX_FUNCTIONS hours of history in one event-loop turn.
   */
  namespace: dnsLabel,
  name: dnsLabel,
});
export type GatewayStatsRequest = z.infer<typeof GatewayStatsRequest>;
/** One STATS_BUCKET_SECONDS slice: answers, 5xx/transport errors, latency counts per bound. */
export const StatsBucket = z.object({
  /** Start of the slice, ms since the epoch, a multiple of STATS_BUCKET_SECONDS * 1000. */
  t: z.number().int(),
  count: z.number().int().nonnegative(),
  errors: z.number().int().nonnegative(),
  /** Counts per STATS_LATENCY_BOUNDS_MS bound, plus one last for longer (length bounds + 1). */
  latency: z.array(z.number().int().nonnegative()),
});
export type StatsBucket = z.infer<typeof StatsBucket>;
export const GatewayStatsReply = z.object({
  gateway: z.string().min(1),
  now: z.number().int(),
  functions: z.array(
    z.object({ namespace: dnsLabel, name: dnsLabel, buckets: z.array(StatsBucket) }),
  ),
});
export type GatewayStatsReply = z.infer<typeof GatewayStatsReply>;

/** Registry → gateways after a committed write: answer once the change is applied. */
export const GatewaySyncRequest = z.object({
  kind: kindPlural,
  op: z.enum(["created", "updated", "deleted"]),
  namespace: dnsLabel,
  name: dnsLabel,
  revision: z.number().int().positive(),
  /**
   * The committed object's incarnation (metadata.uid). With it a gateway whose event already
   * applied this incarnation at this revision answers at once; without it (an older registry) a
   * created object is always fetched, since a name held may be an earlier incarnation's.
   */
  uid: z.string().min(1).optional(),
});
export type GatewaySyncRequest = z.infer<typeof GatewaySyncRequest>;
export const GatewaySyncReply = z.object({ gateway: z.string().min(1), applied: z.boolean() });
export type GatewaySyncReply = z.infer<typeof GatewaySyncReply>;

export const GatewayPresence = z.object({
  gateway: z.string().min(1),
  /** How often this gateway announces itself; a registry forgets it after a few missed beats. */
  intervalMs: z.number().int().positive(),
});
export type GatewayPresence = z.infer<typeof GatewayPresence>;

/** The package a build is for, at the revision that asked for it. */
export const PackageRef = z.object({
  namespace: dnsLabel,
  name: dnsLabel,
  revision: z.number().int().positive(),
});
export type PackageRef = z.infer<typeof PackageRef>;

/**
 * Registry → builder, through the FIZZ_BUILDS work-queue stream (nothing is lost while no builder
 * runs). Deduplicated by `Nats-Msg-Id` = `<ns>/<name>/<sourceDigest>`.
 */
export const BuildRequest = z.object({
  package: PackageRef,
  environment: EnvironmentRef,
  source: ArchiveRef,
  buildCommand: z.string().optional(),
});
export type BuildRequest = z.infer<typeof BuildRequest>;

/**
 * Builder → registry (request/reply), at start and at the end of a build. The registry applies it
 * only while the package's source is still `sourceDigest` (a newer upload makes it stale).
 */
export const BuildReport = z.object({
  package: PackageRef,
  sourceDigest: sha256Digest,
  state: z.enum(["running", "succeeded", "failed"]),
  deployment: ArchiveRef.optional(),
  log: z.string().optional(),
  message: z.string().optional(),
  durationMs: z.number().nonnegative().optional(),
});
export type BuildReport = z.infer<typeof BuildReport>;
/** `applied: false` when the report was stale (the package changed or is gone): nothing to retry. */
export const BuildReportReply = z.object({ applied: z.boolean() });
export type BuildReportReply = z.infer<typeof BuildReportReply>;

/** Poolkeeper → registry: the values of a function's secrets and configmaps (process backend). */
export const ConfigReadRequest = z.object({
  namespace: dnsLabel,
  secrets: z.array(dnsLabel).default([]),
  configmaps: z.array(dnsLabel).default([]),
});
export type ConfigReadRequest = z.infer<typeof ConfigReadRequest>;
export const ConfigReadReply = z.object({
  secrets: z.array(ConfigValues),
  configmaps: z.array(ConfigValues),
});
export type ConfigReadReply = z.infer<typeof ConfigReadReply>;
