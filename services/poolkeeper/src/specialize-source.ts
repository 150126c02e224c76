import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { FizzError, type ArchiveRef, type CodeRef, type SpecializeRequest } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import type { CodeCache } from "./code-cache";
import type { FunctionConfig } from "./function-config";
import {
  metaLine,
  type SpecializeArchive,
  type SpecializeBody,
  type SpecializeMeta,
} from "./runtime-client";

/** What the specializer reads from the Object Store (@fizz/kit/archive-store's ArchiveStore). */
export interface BlobStore {
  get(digest: string): Promise<Readable | null>;
  getBuffer(digest: string, maxBytes: number): Promise<Buffer | null>;
  has(digest: string): Promise<boolean>;
  /** The archive hard-linked into `dir` under a fresh name (ArchiveCache.linkInto); undefined when not. */
  linkInto?(digest: string, dir: string, bytes?: number): Promise<string | undefined>;
  /** The package extracted, as links in a fresh directory in `dir` (ArchiveCache.linkPackageInto). */
  linkPackageInto?(digest: string, dir: string, bytes?: number): Promise<string | undefined>;
}

/**
 * The instance a payload is for. `privateDir` is set only where the archive may be handed over as
 * a file instead of a body: the process backend's instance with its own uid and 0700 directory,
 * of a runtime that reads `archiveFile` (Go), on a first attempt.
 */
export interface PayloadTarget {
  id: string;
  privateDir?: string | undefined;
}

/** The runtime refuses larger bodies (FIZZ_MAX_BODY_BYTES); the registry's own limit is lower. */
export const CODE_MAX_BYTES = 64 * 1024 * 1024;

/** What a specialization sends, read once; `payload` is called once per attempt (per instance). */
export interface Source {
  /** Extra time for the POST: a big archive takes time to stream and unpack. */
  extraTimeoutMs: number;
  /** Throws PAYLOAD_TOO_LARGE when env, secrets and configmaps do not fit the runtime's header line. */
  check(config: FunctionConfig): void;
  payload(
    target: PayloadTarget,
    config: FunctionConfig,
  ): Promise<SpecializeBody | SpecializeArchive>;
}

/** Archive transfer and unpacking allowance: 1 s per 8 MiB on top of the specialize timeout. */
const ARCHIVE_BYTES_PER_SECOND = 8 * 1024 * 1024;

/** As long as the names linkInto and linkPackageInto give (the header line carries them). */
const ARCHIVE_FILE_LIKE = `.fizz-archive-${"0".repeat(32)}`;

type MetaOf = (instanceId: string, config: FunctionConfig, digest: string) => SpecializeMeta;

/**
 * Reads what the request names from the store, before any instance is taken: a missing blob or a
 * tampered one fails the request without costing a warm instance. An archive is only checked for
 * presence here; its bytes are streamed per attempt.
 */
export async function loadSource(
  req: SpecializeRequest,
  deps: { store: BlobStore; cache: CodeCache; logger: Logger },
): Promise<Source> {
  const meta: MetaOf = (instanceId, config, digest) => ({
    instanceId,
    function: req.function,
    ...(req.entrypoint !== undefined ? { entrypoint: req.entrypoint } : {}),
    concurrency: req.concurrency,
    ...(req.env && Object.keys(req.env).length > 0 ? { env: req.env } : {}),
    ...(Object.keys(config.secrets).length > 0 ? { secrets: config.secrets } : {}),
    ...(Object.keys(config.configmaps).length > 0 ? { configmaps: config.configmaps } : {}),
    digest,
  });
  if (req.archive) return archiveSource(req.archive, meta, deps);
  if (!req.code)
    throw new FizzError("VALIDATION_FAILED", "no code and no archive", { field: "code" });
  const ref = req.code;
  const base64 = (await readCode(ref, deps, req)).toString("base64");
  return {
    extraTimeoutMs: 0,
    // The JSON form has no header line; the runtime's body limit is far above what config holds.
    check: () => undefined,
    payload: (target, config) =>
      Promise.resolve({
        ...meta(target.id, config, ref.digest),
        filename: ref.filename,
        code: base64,
      }),
  };
}

async function archiveSource(
  ref: ArchiveRef,
  meta: MetaOf,
  deps: { store: BlobStore },
): Promise<Source> {
  const missing = () =>
    new FizzError(
      "NOT_FOUND",
      `archive ${ref.digest} (the package's deployment) is not in the store`,
      { field: "archive.digest" },
    );
  if (!(await deps.store.has(ref.digest))) throw missing();
  return {
    extraTimeoutMs: Math.ceil((ref.size / ARCHIVE_BYTES_PER_SECOND) * 1000),
    // Measured with an id longer than any backend gives (an environment name and a suffix).
    check: (config) =>
      void metaLine({
        ...meta("x".repeat(80), config, ref.digest),
        archiveFile: ARCHIVE_FILE_LIKE,
      }),
    // Opened per attempt: a stream is read once, and a retry goes to another instance.
    payload: async (target, config) => {
      const base = meta(target.id, config, ref.digest);
      // No 6 MB body through the instance's socket. Best, the package already extracted and
      // checked here, as links the runtime renames to its fn/ and runs as they are; else the
      // runtime reads its own link to the cached archive and extracts and hashes it as it would
      // a body (runtimes/go/runtime/fizz_warm_archive.go, archiveFile: the name's prefix says which).
      const dir = target.privateDir;
      let file: string | undefined;
      if (dir !== undefined) {
        file = await deps.store.linkPackageInto?.(ref.digest, dir, ref.size);
        file ??= await deps.store.linkInto?.(ref.digest, dir, ref.size);
      }
      if (file !== undefined)
        return { meta: { ...base, archiveFile: file }, archive: Readable.from([]), size: 0 };
      const archive = await deps.store.get(ref.digest);
      if (!archive) throw missing();
      return { meta: base, archive, size: ref.size };
    },
  };
}

/**
 * The code blob, from the cache or the store. The store is not trusted to hand back what was
 * written: bytes that do not hash to the digest the function was registered with are never served.
 */
async function readCode(
  ref: CodeRef,
  deps: { store: BlobStore; cache: CodeCache; logger: Logger },
  req: SpecializeRequest,
): Promise<Buffer> {
  const hit = deps.cache.get(ref.digest);
  if (hit) return hit;
  const what = `code ${ref.digest} (${ref.filename})`;
  const mismatch = (actual: string | undefined) => {
    deps.logger.error(
      {
        function: `${req.function.namespace}/${req.function.name}@${req.function.revision}`,
        digest: ref.digest,
        ...(actual ? { actual } : {}),
      },
      "code in the store does not match its digest; refusing to load it",
    );
    return new FizzError(
      "DIGEST_MISMATCH",
      `${what} in the store ${actual ? `hashes to ${actual}` : "does not hash to its digest"}: tampered or corrupt, not loaded`,
      { field: "code.digest", retryable: false },
    );
  };
  let code: Buffer | null;
  try {
    code = await deps.store.getBuffer(ref.digest, CODE_MAX_BYTES);
  } catch (err) {
    if (err instanceof FizzError && err.code === "DIGEST_MISMATCH") throw mismatch(undefined);
    throw err;
  }
  if (!code)
    throw new FizzError("NOT_FOUND", `${what} is not in the store`, { field: "code.digest" });
  const actual = `sha256:${createHash("sha256").update(code).digest("hex")}`;
  if (actual !== ref.digest) throw mismatch(actual);
  deps.cache.set(ref.digest, code);
  return code;
}
