import { z } from "zod";
import { dnsLabel } from "./names";
import {
  ARCHIVE_MAX_BYTES,
  ConfigMapSpec,
  FunctionPackageRef,
  PackageSpec,
  PackageStatus,
  SecretSpec,
  SecretSpecInput,
  envVarName,
} from "./packages";
import { MessageQueueTriggerSpec, TimeTriggerSpec, WatchTriggerSpec } from "./trigger-specs";

/**
 * Registry objects. The stored shape is what the REST API returns and what change events carry;
 * the `...Input` shapes are what a client may send. Defaults are applied here, once, so every
 * service sees the same effective values.
 */
export const API_VERSION = "fizz.dev/v1";

export const Kinds = {
  environments: "Environment",
  functions: "Function",
  httptriggers: "HttpTrigger",
  mqtriggers: "MessageQueueTrigger",
  timetriggers: "TimeTrigger",
  watchtriggers: "WatchTrigger",
  packages: "Package",
  secrets: "Secret",
  configmaps: "ConfigMap",
} as const;

/** Kinds whose objects invoke a function (`spec.function`); a function they name is in use. */
export const TRIGGER_KINDS = [
  "httptriggers",
  "mqtriggers",
  "timetriggers",
  "watchtriggers",
] as const;
export type KindPlural = keyof typeof Kinds;
export type Kind = (typeof Kinds)[KindPlural];
export const KIND_PLURALS = Object.keys(Kinds) as KindPlural[];

export function isKindPlural(value: string): value is KindPlural {
  return Object.hasOwn(Kinds, value);
}

const labels = z.record(dnsLabelKey(), z.string().max(63)).default({});
function dnsLabelKey() {
  return z
    .string()
    .regex(/^([a-z0-9.-]+\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/, "invalid label key");
}

export const Metadata = z.object({
  namespace: dnsLabel,
  name: dnsLabel,
  uid: z.string(),
  revision: z.number().int().positive(),
  labels: z.record(z.string(), z.string()),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type Metadata = z.infer<typeof Metadata>;

const quantity = z
  .string()
  .regex(
    /^[0-9]+(\.[0-9]+)?(m|k|[KMGTPE]i?)?$/,
    "must be a Kubernetes quantity, e.g. 100m or 128Mi",
  );
const resourceList = z.object({ cpu: quantity.optional(), memory: quantity.optional() }).strict();

export const EnvironmentSpec = z.object({
  image: z.string().min(1, "is required").max(512),
  command: z.array(z.string().min(1)).min(1).optional(),
  poolSize: z.number().int().min(0).max(100).default(3),
  concurrency: z.number().int().min(1).max(10000).optional(),
  /** Requests and limits of each instance pod (kubernetes backend). */
  resources: z
    .object({ requests: resourceList.optional(), limits: resourceList.optional() })
    .strict()
    .optional(),
  /**
   * How packages for this environment are built. Process backend: a local builder process (npm for
   * Node, pip for Python, or the package's build command). Kubernetes: a builder pod of `image`
   * (default: the runtime image's `-builder` sibling, e.g. fizz/env-python → fizz/builder-python).
   */
  builder: z
    .object({
      image: z.string().min(1).max(512).optional(),
      /** Passed to the build, e.g. PIP_INDEX_URL, PIP_FIND_LINKS, NPM_CONFIG_REGISTRY. */
      env: z.record(envVarName, z.string().max(4096)).optional(),
      timeoutSeconds: z.number().int().min(1).max(3600).default(300),
      /** Largest deployment a build may produce (canonical tar.gz). */
      maxDeploymentBytes: z.number().int().min(1).max(ARCHIVE_MAX_BYTES).default(ARCHIVE_MAX_BYTES),
    })
    .strict()
    .optional(),
});
export type EnvironmentSpec = z.infer<typeof EnvironmentSpec>;

export const CodeRef = z.object({
  filename: z.string().min(1),
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
});
export type CodeRef = z.infer<typeof CodeRef>;

/** Code as a client uploads it: the file itself, base64 encoded. */
export const CodeUpload = z.object({
  filename: z
    .string()
    .min(1, "is required")
    .max(255)
    .regex(/^[A-Za-z0-9._-]+$/, "must be a plain file name (letters, digits, '.', '_', '-')")
    .refine((f) => f !== "." && f !== "..", "must be a file name"),
  content: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, "must be base64"),
});
export type CodeUpload = z.infer<typeof CodeUpload>;

/**
 * `fn`, `file.fn` or `dir/file.fn` (Python `main.main`, Node `index.handler`): the file is looked up
 * in the function's code, so no segment may be `..` or start with '.'.
 */
export const entrypoint = z
  .string()
  .max(512)
  .regex(
    /^(?:[A-Za-z0-9_][A-Za-z0-9_-]*\/)*(?:[A-Za-z0-9_][A-Za-z0-9_-]*\.)?[A-Za-z_$][\w$]*$/,
    "must be 'fn', 'file.fn' or 'dir/file.fn'",
  );

const limits = {
  entrypoint: entrypoint.optional(),
  /** Extra environment for the function (`--env-var K=V`); never the platform's own variables. */
  env: z.record(envVarName, z.string().max(32 * 1024)).optional(),
  /** Secrets (by name, in the function's namespace) under FIZZ_SECRETS_DIR/<ns>/<name>/<key>. */
  secrets: z.array(dnsLabel).max(32).optional(),
  /** ConfigMaps under FIZZ_CONFIGS_DIR/<ns>/<name>/<key>. */
  configmaps: z.array(dnsLabel).max(32).optional(),
  concurrency: z.number().int().min(1).max(10000).optional(),
  minInstances: z.number().int().min(0).max(1000).default(0),
  maxInstances: z.number().int().min(1).max(1000).default(10),
  timeoutSeconds: z.number().positive().max(3600).default(60),
  idleTimeoutSeconds: z.number().positive().max(86400).default(120),
};

/** Exactly one of `code` (a single file, as before packages) and `package`. */
function oneCodeSource(s: { code?: unknown; package?: unknown }, ctx: z.RefinementCtx): void {
  if ((s.code === undefined) === (s.package === undefined)) {
    ctx.addIssue({
      code: "custom",
      path: ["code"],
      message: "exactly one of code and package is required",
    });
  }
}

export const FunctionSpec = z
  .object({
    environment: dnsLabel,
    code: CodeRef.optional(),
    package: FunctionPackageRef.optional(),
    ...limits,
  })
  .superRefine(oneCodeSource);
export type FunctionSpec = z.infer<typeof FunctionSpec>;

/** What a client sends: `package.deployment` is the registry's to fill in, so it is not accepted. */
export const FunctionSpecInput = z
  .object({
    environment: dnsLabel,
    code: CodeUpload.optional(),
    package: z.object({ name: dnsLabel }).strict().optional(),
    ...limits,
  })
  .superRefine(oneCodeSource);

const routePath = z
  .string()
  .max(1024)
  .regex(/^\/[^\s?#]*$/, "must start with '/' and hold no spaces, '?' or '#'");

export const HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;

export const HttpTriggerSpec = z
  .object({
    function: dnsLabel,
    path: routePath.optional(),
    prefix: routePath.optional(),
    methods: z
      .array(
        z
          .string()
          .transform((m) => m.toUpperCase())
          .pipe(z.enum(HTTP_METHODS)),
      )
      .default([]),
    host: z
      .string()
      .regex(/^[a-z0-9.-]+(:\d+)?$/i, "must be a host name")
      .transform((h) => h.toLowerCase())
      .optional(),
  })
  .superRefine((s, ctx) => {
    if ((s.path === undefined) === (s.prefix === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: ["path"],
        message: "exactly one of path and prefix is required",
      });
    }
  });
export type HttpTriggerSpec = z.infer<typeof HttpTriggerSpec>;

export const specSchemas = {
  environments: EnvironmentSpec,
  functions: FunctionSpec,
  httptriggers: HttpTriggerSpec,
  mqtriggers: MessageQueueTriggerSpec,
  timetriggers: TimeTriggerSpec,
  watchtriggers: WatchTriggerSpec,
  packages: PackageSpec,
  secrets: SecretSpec,
  configmaps: ConfigMapSpec,
} as const;

export const specInputSchemas = {
  environments: EnvironmentSpec,
  functions: FunctionSpecInput,
  httptriggers: HttpTriggerSpec,
  mqtriggers: MessageQueueTriggerSpec,
  timetriggers: TimeTriggerSpec,
  watchtriggers: WatchTriggerSpec,
  packages: PackageSpec,
  secrets: SecretSpecInput,
  configmaps: ConfigMapSpec,
} as const;

export const CreateInput = z.object({
  name: dnsLabel,
  labels: labels,
  spec: z.record(z.string(), z.unknown()),
});

export const PatchInput = z.object({
  labels: z.record(z.string(), z.string()).optional(),
  spec: z.record(z.string(), z.unknown()).default({}),
  revision: z.number().int().positive().optional(),
});

function objectSchema<K extends Kind, S extends z.ZodType>(kind: K, spec: S) {
  return z.object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(kind),
    metadata: Metadata,
    spec,
  });
}

export const Environment = objectSchema("Environment", EnvironmentSpec);
export type Environment = z.infer<typeof Environment>;
export const FunctionObject = objectSchema("Function", FunctionSpec);
export type FunctionObject = z.infer<typeof FunctionObject>;
export const HttpTrigger = objectSchema("HttpTrigger", HttpTriggerSpec);
export type HttpTrigger = z.infer<typeof HttpTrigger>;

export const MessageQueueTrigger = objectSchema("MessageQueueTrigger", MessageQueueTriggerSpec);
export type MessageQueueTrigger = z.infer<typeof MessageQueueTrigger>;
export const TimeTrigger = objectSchema("TimeTrigger", TimeTriggerSpec);
export type TimeTrigger = z.infer<typeof TimeTrigger>;
export const WatchTrigger = objectSchema("WatchTrigger", WatchTriggerSpec);
export type WatchTrigger = z.infer<typeof WatchTrigger>;

/** The registry owns `status`: a client's create or update never sets it. */
export const PackageObject = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal("Package"),
  metadata: Metadata,
  spec: PackageSpec,
  status: PackageStatus,
});
export type PackageObject = z.infer<typeof PackageObject>;
export const SecretObject = objectSchema("Secret", SecretSpec);
export type SecretObject = z.infer<typeof SecretObject>;
export const ConfigMapObject = objectSchema("ConfigMap", ConfigMapSpec);
export type ConfigMapObject = z.infer<typeof ConfigMapObject>;

export const AnyObject = z.discriminatedUnion("kind", [
  Environment,
  FunctionObject,
  HttpTrigger,
  MessageQueueTrigger,
  TimeTrigger,
  WatchTrigger,
  PackageObject,
  SecretObject,
  ConfigMapObject,
]);
export type AnyObject = z.infer<typeof AnyObject>;

export const objectSchemas = {
  environments: Environment,
  functions: FunctionObject,
  httptriggers: HttpTrigger,
  mqtriggers: MessageQueueTrigger,
  timetriggers: TimeTrigger,
  watchtriggers: WatchTrigger,
  packages: PackageObject,
  secrets: SecretObject,
  configmaps: ConfigMapObject,
} as const;

export interface ObjectsByPlural {
  environments: Environment;
  functions: FunctionObject;
  httptriggers: HttpTrigger;
  mqtriggers: MessageQueueTrigger;
  timetriggers: TimeTrigger;
  watchtriggers: WatchTrigger;
  packages: PackageObject;
  secrets: SecretObject;
  configmaps: ConfigMapObject;
}

/**
 * Default per-instance concurrency when neither the function nor its environment sets one: high
 * for the event-loop and goroutine runtimes, 10 for the thread-per-request ones (Python, PHP,
 * Ruby, C#), whose requests beyond that queue in the instance anyway.
 */
export const DEFAULT_CONCURRENCY = {
  node: 50,
  python: 10,
  go: 50,
  php: 10,
  ruby: 10,
  dotnet: 10,
  other: 10,
} as const;
