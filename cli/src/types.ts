/** The registry's objects as docs/api.md defines them; only what the CLI reads is typed. */

export interface Metadata {
  namespace: string;
  name: string;
  uid?: string;
  revision: number;
  labels?: Record<string, string>;
  createdAt?: string;
  updatedAt?: string;
}

export interface ApiObject<Spec> {
  apiVersion: string;
  kind: string;
  metadata: Metadata;
  spec: Spec;
}

export interface EnvironmentSpec {
  image: string;
  command?: string[];
  poolSize?: number;
  concurrency?: number;
  builder?: {
    image?: string;
    env?: Record<string, string>;
    timeoutSeconds?: number;
    maxDeploymentBytes?: number;
  };
}

/** What is sent on write: the file itself. */
export interface CodeUpload {
  filename: string;
  /** base64 */
  content: string;
}

/** What the registry answers on read: the code is stored content-addressed. */
export interface CodeRef {
  filename: string;
  digest?: string;
  size?: number;
}

export interface FunctionSpec {
  environment: string;
  /** Exactly one of code (a single file) and package. */
  code?: CodeRef;
  package?: { name: string; deployment?: ArchiveRef };
  entrypoint?: string;
  env?: Record<string, string>;
  secrets?: string[];
  configmaps?: string[];
  concurrency?: number;
  minInstances?: number;
  maxInstances?: number;
  timeoutSeconds?: number;
  idleTimeoutSeconds?: number;
}

export interface HttpTriggerSpec {
  function: string;
  path?: string;
  prefix?: string;
  methods?: string[];
  host?: string;
}

export interface MessageQueueTriggerSpec {
  function: string;
  subject: string;
  queueGroup?: string;
  responseSubject?: string;
  errorSubject?: string;
  maxRetries?: number;
  contentType?: string;
  stream?: string;
}

export interface TimeTriggerSpec {
  function: string;
  cron: string;
  method?: string;
  body?: string;
  contentType?: string;
}

export interface WatchTriggerSpec {
  function: string;
  /** The Kubernetes namespace watched (not the trigger's own). */
  namespace: string;
  resource: string;
  labels?: string;
  fields?: string;
  events?: string[];
}

/** A stored canonical archive (tar.gz), content-addressed. */
export interface ArchiveRef {
  digest: string;
  size: number;
  files?: number;
}

export interface PackageSpec {
  environment: string;
  source?: ArchiveRef;
  deployment?: ArchiveRef;
  buildCommand?: string;
}

export type BuildState = "pending" | "running" | "succeeded" | "failed";

/** Owned by the registry: where the build of `sourceDigest` stands, and what instances load. */
export interface PackageStatus {
  buildState: BuildState;
  sourceDigest?: string;
  deployment?: ArchiveRef;
  buildLog?: string;
  message?: string;
  startedAt?: string;
  finishedAt?: string;
}

export interface PackageObject extends ApiObject<PackageSpec> {
  status?: PackageStatus;
}

/** As stored and returned: key names only, the values never leave the registry. */
export interface SecretSpec {
  keys: string[];
}

export interface ConfigMapSpec {
  data: Record<string, string>;
}

export type Environment = ApiObject<EnvironmentSpec>;
export type FunctionObject = ApiObject<FunctionSpec>;
export type HttpTrigger = ApiObject<HttpTriggerSpec>;
export type MessageQueueTrigger = ApiObject<MessageQueueTriggerSpec>;
export type TimeTrigger = ApiObject<TimeTriggerSpec>;
export type WatchTrigger = ApiObject<WatchTriggerSpec>;
export type SecretObject = ApiObject<SecretSpec>;
export type ConfigMapObject = ApiObject<ConfigMapSpec>;

export interface List<T> {
  items: T[];
}
