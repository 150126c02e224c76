import { z } from "zod";
import { dnsLabel } from "./names";

/**
 * Packages, archives, secrets and configmaps: what turns a function into an application.
 *
 * Archives live in the JetStream Object Store (bucket ARCHIVE_BUCKET), named by the sha256 of their
 * bytes. The registry stores only canonical archives: gzip'd tar holding regular files and
 * directories, no links, devices or absolute/`..` paths, deterministic (sorted, mtime 0). Whatever
 * a user uploads (zip, tar, tar.gz) is extracted under @fizz/kit/archive's rules and re-packed, so
 * every later reader (builder, runtime) handles one simple, already-checked format.
 */

/** The Object Store bucket that holds code blobs and archives. */
export const ARCHIVE_BUCKET = "fizz_archives";
/** Largest archive (source or deployment, canonical form) the platform stores. */
export const ARCHIVE_MAX_BYTES = 256 * 1024 * 1024;

export const sha256Digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, "must be sha256:<64 hex>");

/** Object name of a digest in ARCHIVE_BUCKET: `sha256-<hex>` (':' is not allowed in names). */
export function archiveObjectName(digest: string): string {
  const hex = digest.replace(/^sha256:/, "");
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`not a sha256 digest: ${digest}`);
  return `sha256-${hex}`;
}

/** A stored canonical archive (tar.gz). */
export const ArchiveRef = z.object({
  digest: sha256Digest,
  size: z.number().int().nonnegative().max(ARCHIVE_MAX_BYTES),
  /** Regular files in it (what the upload held), for `fizz pkg info`. */
  files: z.number().int().nonnegative().optional(),
});
export type ArchiveRef = z.infer<typeof ArchiveRef>;

/** Why an archive is being uploaded: a source to build or a deployment to run as is. */
export const ArchiveUses = ["source", "deployment"] as const;
export type ArchiveUse = (typeof ArchiveUses)[number];

/** Reply of `POST /v1/namespaces/{ns}/archives?use=source|deployment` (raw archive body). */
export const ArchiveUploadReply = z.object({ archive: ArchiveRef });
export type ArchiveUploadReply = z.infer<typeof ArchiveUploadReply>;

/**
 * The JetStream stream of build requests (subject `subjects().buildRequested`): work-queue
 * retention (a request lives until a builder acknowledges it) and file storage (a nats-server
 * restart loses none). Created by whichever of the registry and the builder starts first, with
 * these settings; the values are JetStream's own spellings of RetentionPolicy and StorageType.
 */
export const BUILD_STREAM = {
  name: "FIZZ_BUILDS",
  retention: "workqueue",
  storage: "file",
  /** Window in which a re-published request with the same Nats-Msg-Id is dropped. */
  duplicateWindowMs: 120_000,
} as const;
/** The builders' shared durable pull consumer on BUILD_STREAM. */
export const BUILD_CONSUMER = "builder";

export const BuildStates = ["pending", "running", "succeeded", "failed"] as const;
export type BuildState = (typeof BuildStates)[number];

/** Tail of a build log kept on the package (the CLI shows its own tail of it). */
export const BUILD_LOG_MAX_CHARS = 64 * 1024;

/**
 * A package: a source archive to build (`source`, optional `buildCommand`), or a deployment used as
 * is (`deployment`, no source). A client sets only these; the registry owns `status`.
 */
export const PackageSpec = z
  .object({
    environment: dnsLabel,
    source: ArchiveRef.optional(),
    deployment: ArchiveRef.optional(),
    /** Custom build command run in the source directory (Fission's `--buildcmd`), e.g. `./build.sh`. */
    buildCommand: z.string().min(1).max(1024).optional(),
  })
  .superRefine((s, ctx) => {
    if ((s.source === undefined) === (s.deployment === undefined)) {
      ctx.addIssue({
        code: "custom",
        path: ["source"],
        message: "exactly one of source and deployment is required",
      });
    }
    if (s.buildCommand !== undefined && s.source === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["buildCommand"],
        message: "needs a source archive to build",
      });
    }
  });
export type PackageSpec = z.infer<typeof PackageSpec>;

export const PackageStatus = z.object({
  buildState: z.enum(BuildStates),
  /** The source digest the state is about (a newer source restarts the build). */
  sourceDigest: sha256Digest.optional(),
  /**
   * The package revision that asked for the current build (BuildRequest.package.revision). A
   * report about any other build (an older build command, a rebuild superseded) is stale.
   */
  buildRevision: z.number().int().positive().optional(),
  /** What instances load: the given deployment, or the last successful build's output. */
  deployment: ArchiveRef.optional(),
  /** The tail of the last build's output (stdout and stderr interleaved). */
  buildLog: z.string().max(BUILD_LOG_MAX_CHARS).default(""),
  /** One line on why the last build failed (time limit, exit code, output too large...). */
  message: z.string().max(4096).optional(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
});
export type PackageStatus = z.infer<typeof PackageStatus>;

/** Secret and configmap keys: Kubernetes' rule, so the same names work on both backends. */
export const configKey = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[-._a-zA-Z0-9]+$/, "must hold only letters, digits, '-', '_' and '.'")
  .refine((k) => k !== "." && k !== "..", "must not be '.' or '..'");

/** Total bytes of one secret's or configmap's values (Kubernetes' own limit). */
export const CONFIG_MAX_BYTES = 1024 * 1024;

/**
 * A secret as a client sends it: values base64 (binary-safe, like Kubernetes' `data`). The
 * registry encrypts the values at rest and never returns them: the stored object (SecretSpec)
 * holds only the key names. Only the poolkeeper reads values, over `registrySecretsRead`.
 */
export const SecretSpecInput = z.object({
  data: z.record(configKey, z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, "must be base64")),
});
export const SecretSpec = z.object({ keys: z.array(configKey) });
export type SecretSpec = z.infer<typeof SecretSpec>;

export const ConfigMapSpec = z.object({ data: z.record(configKey, z.string()) });
export type ConfigMapSpec = z.infer<typeof ConfigMapSpec>;

/** Names of function env vars: POSIX-ish, and never the platform's own (FIZZ_*, PORT, HOST...). */
export const RESERVED_ENV = new Set([
  "PORT",
  "HOST",
  "HOME",
  "PATH",
  "TMPDIR",
  "NODE_OPTIONS",
  "NODE_PATH",
  "PYTHONPATH",
  "PYTHONHOME",
  "PYTHONSTARTUP",
  "LD_PRELOAD",
  "LD_LIBRARY_PATH",
]);
/**
 * Variables the C library and dynamic loader act on before any program code runs. A build's
 * variables are set on `setpriv`, which starts as root and drops privileges only once loaded:
 * LD_AUDIT or GCONV_PATH there would load a chosen library into a root process.
 */
const LOADER_ENV =
  /^(LD_|GCONV_PATH$|LOCPATH$|NLSPATH$|GLIBC_TUNABLES$|MALLOC_|RESOLV_HOST_CONF$|HOSTALIASES$)/;

export const envVarName = z
  .string()
  .max(256)
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a variable name (letters, digits, '_')")
  .refine((n) => !n.startsWith("FIZZ_"), "FIZZ_* variables are the platform's")
  .refine((n) => !RESERVED_ENV.has(n), "is set by the platform")
  .refine((n) => !LOADER_ENV.test(n), "is read by the dynamic loader or C library, not allowed");

/** The function's link to a package; `deployment` is copied in by the registry, never by a client. */
export const FunctionPackageRef = z.object({
  name: dnsLabel,
  deployment: ArchiveRef.optional(),
});
export type FunctionPackageRef = z.infer<typeof FunctionPackageRef>;

/** Secret and configmap values as the poolkeeper gets them: base64 per key. */
export const ConfigValues = z.object({
  name: dnsLabel,
  data: z.record(z.string(), z.string()),
});
export type ConfigValues = z.infer<typeof ConfigValues>;
