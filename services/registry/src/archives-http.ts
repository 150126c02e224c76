import { createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Request, RequestHandler, Response } from "express";
import { ArchiveUses, FizzError, type ArchiveRef, type ArchiveUploadReply } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import { canonicalize } from "@fizz/kit/archive";
import type { Operations } from "./operations";
import { checkName } from "./validation";

/**
 * Archive uploads and downloads. An upload is streamed to a file in a fresh directory under the
 * work dir (never held in memory), counted against the limit as it arrives, canonicalized by
 * @fizz/kit/archive (extracted under its safety rules, re-packed as a deterministic tar.gz) and
 * stored under the digest of the canonical bytes; the directory is removed whatever happens. So
 * the store only ever holds archives that already passed the checks, in one simple format.
 */
export interface ArchiveHttpOptions {
  ops: () => Operations | undefined;
  workDir: string;
  maxBytes: number;
  logger: Logger;
}

/**
 * Archive bodies only. Browsers send text/plain, forms and multipart across sites without a
 * CORS preflight, so those (and a body without a type) are refused like everywhere else; these
 * types need a preflight, which only FIZZ_CORS_ORIGINS pass. The format is sniffed regardless.
 */
export const ARCHIVE_CONTENT_TYPES = [
  "application/gzip",
  "application/x-gzip",
  "application/x-tar",
  "application/zip",
  "application/octet-stream",
];

export function uploadArchive(o: ArchiveHttpOptions): RequestHandler {
  return async (req: Request, res: Response) => {
    checkName(String(req.params.ns ?? ""), "namespace");
    const use = req.query.use;
    if (use !== undefined && !(ArchiveUses as readonly unknown[]).includes(use))
      throw new FizzError("VALIDATION_FAILED", `use: must be one of ${ArchiveUses.join(", ")}`, {
        field: "use",
      });
    checkArchiveBody(req);
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > o.maxBytes) {
      // The body is not read: close the connection after answering instead of draining it.
      res.set("connection", "close");
      throw tooLarge(o.maxBytes);
    }
    const ops = o.ops();
    if (!ops) throw starting();
    const dir = await mkdtemp(join(o.workDir, "fizz-upload-"));
    let reply: ArchiveUploadReply;
    try {
      reply = await receive(req, res, dir, ops, o);
    } finally {
      // Before answering: a client that saw the answer finds nothing of the upload left on disk.
      await rm(dir, { recursive: true, force: true }).catch((err: unknown) =>
        o.logger.warn({ err: (err as Error).message, dir }, "upload directory not removed"),
      );
    }
    res.status(201).json(reply);
  };
}

async function receive(
  req: Request,
  res: Response,
  dir: string,
  ops: Operations,
  o: ArchiveHttpOptions,
): Promise<ArchiveUploadReply> {
  const upload = join(dir, "upload");
  try {
    await pipeline(req, new ByteLimit(o.maxBytes), createWriteStream(upload, { mode: 0o600 }));
  } catch (err) {
    res.set("connection", "close");
    throw err instanceof FizzError
      ? err
      : new FizzError("INVALID_BODY", `upload could not be read: ${(err as Error).message}`);
  }
  const canonical = await canonicalize(upload, join(dir, "work"), {
    maxArchiveBytes: o.maxBytes,
  });
  if (canonical.size > o.maxBytes) throw tooLarge(o.maxBytes, "its canonical form");
  const stored = await ops.opts.archives.putFile(canonical.path);
  const archive: ArchiveRef = { digest: stored.digest, size: stored.size, files: canonical.files };
  o.logger.info(
    {
      namespace: req.params.ns,
      use: req.query.use,
      ...archive,
      skippedLinks: canonical.skipped.length,
    },
    "archive uploaded and canonicalized",
  );
  return { archive };
}

/** GET .../packages/{name}/source or /deployment: the canonical tar.gz, streamed from the store. */
export function downloadPackageArchive(
  ops: () => Operations | undefined,
  which: "source" | "deployment",
): RequestHandler {
  return async (req: Request, res: Response) => {
    const o = ops();
    if (!o) throw starting();
    const ns = String(req.params.ns ?? "");
    const name = String(req.params.name ?? "");
    const pkg = await o.get("packages", ns, name);
    if (pkg.kind !== "Package") throw new FizzError("INTERNAL", "not a package");
    const ref = which === "source" ? pkg.spec.source : pkg.status.deployment;
    if (!ref)
      throw new FizzError(
        "NOT_FOUND",
        which === "source"
          ? `package "${ns}/${name}" has no source (it was given a deployment)`
          : `package "${ns}/${name}" has no deployment yet (build ${pkg.status.buildState})`,
        { field: "name" },
      );
    const body = await o.opts.archives.get(ref.digest);
    if (!body)
      throw new FizzError(
        "INTERNAL",
        `archive ${ref.digest} of package "${ns}/${name}" is missing`,
      );
    res.attachment(`${name}-${which}.tar.gz`);
    res.set({ "content-type": "application/gzip", "x-fizz-archive-digest": ref.digest });
    res.status(200);
    // A digest mismatch mid-way destroys the response: the client sees a cut download, never
    // bytes that pass for the archive.
    await pipeline(body, res);
  };
}

function checkArchiveBody(req: Request): void {
  const type = req.is(ARCHIVE_CONTENT_TYPES);
  if (type === null)
    throw new FizzError("INVALID_BODY", "the body must be the archive (tar, tar.gz or zip)");
  if (type === false)
    throw new FizzError(
      "UNSUPPORTED_MEDIA_TYPE",
      `Content-Type must be one of ${ARCHIVE_CONTENT_TYPES.join(", ")}, got ${JSON.stringify(req.headers["content-type"] ?? "")}`,
      { field: "Content-Type" },
    );
}

function tooLarge(max: number, what = "the upload"): FizzError {
  return new FizzError(
    "PAYLOAD_TOO_LARGE",
    `${what} is larger than the limit of ${max} bytes (FIZZ_ARCHIVE_MAX_BYTES)`,
  );
}

function starting(): FizzError {
  return new FizzError("UNAVAILABLE", "the registry is starting (not connected to NATS yet)", {
    retryable: true,
  });
}

/** Passes bytes through until more than `max` arrived, then fails the pipeline. */
class ByteLimit extends Transform {
  private seen = 0;
  constructor(private readonly max: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.max) return cb(tooLarge(this.max));
    cb(null, chunk);
  }
}
