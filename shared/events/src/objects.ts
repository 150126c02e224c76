import { z } from "zod";
import { dnsLabel } from "./names";
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

const limits = {
  entrypoint: z
    .string()
    .regex(/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)?$/, "must be 'fn' or 'file.fn'")
    .optional(),
  concurrency: z.number().int().min(1).max(10000).optional(),
  minInstances: z.number().int().min(0).max(1000).default(0),
  maxInstances: z.number().int().min(1).max(1000).default(10),
  timeoutSeconds: z.number().positive().max(3600).default(60),
  idleTimeoutSeconds: z.number().positive().max(86400).default(120),
};

export const FunctionSpec = z.object({ environment: dnsLabel, code: CodeRef, ...limits });
export type FunctionSpec = z.infer<typeof FunctionSpec>;

export const FunctionSpecInput = z.object({ environment: dnsLabel, code: CodeUpload, ...limits });

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
} as const;

export const specInputSchemas = {
  environments: EnvironmentSpec,
  functions: FunctionSpecInput,
  httptriggers: HttpTriggerSpec,
  mqtriggers: MessageQueueTriggerSpec,
  timetriggers: TimeTriggerSpec,
  watchtriggers: WatchTriggerSpec,
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

export const AnyObject = z.discriminatedUnion("kind", [
  Environment,
  FunctionObject,
  HttpTrigger,
  MessageQueueTrigger,
  TimeTrigger,
  WatchTrigger,
]);
export type AnyObject = z.infer<typeof AnyObject>;

export const objectSchemas = {
  environments: Environment,
  functions: FunctionObject,
  httptriggers: HttpTrigger,
  mqtriggers: MessageQueueTrigger,
  timetriggers: TimeTrigger,
  watchtriggers: WatchTrigger,
} as const;

export interface ObjectsByPlural {
  environments: Environment;
  functions: FunctionObject;
  httptriggers: HttpTrigger;
  mqtriggers: MessageQueueTrigger;
  timetriggers: TimeTrigger;
  watchtriggers: WatchTrigger;
}

/** Default per-instance concurrency when neither the function nor its environment sets one. */
export const DEFAULT_CONCURRENCY = { node: 50, python: 10, other: 10 } as const;
