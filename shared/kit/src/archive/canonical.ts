import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { ARCHIVE_MAX_BYTES } from "@fizz/events";
import { extractArchive } from "./extract.js";
import { resolveLimits, type ArchiveLimits } from "./limits.js";
import { packDirectory } from "./pack.js";

export interface CanonicalLimits extends ArchiveLimits {
  /** Largest canonical tar.gz; over it PAYLOAD_TOO_LARGE. */
  maxArchiveBytes: number;
}

export interface CanonicalArchive {
  /** The canonical tar.gz, in `workDir`; the caller stores and removes it. */
  path: string;
  /** `sha256:<hex>` of its bytes. */
  digest: string;
  size: number;
  /** Regular files in it. */
  files: number;
  /** Links left out (pointing outside, or at something other than a regular file). */
  skipped: string[];
}

/**
 * Turns an upload (tar, tar.gz or zip, sniffed) into the one form the platform stores: extracts
 * it under the safety limits (ArchiveError passes through), packs the tree canonically and removes
 * it. Links inside the tree become copies of their files, and those copies count against
 * `maxTotalBytes` again, so links cannot multiply what gets compressed.
 */
export async function canonicalize(
  uploadPath: string,
  workDir: string,
  limits: Partial<CanonicalLimits> = {},
  opts: { gzipLevel?: number } = {},
): Promise<CanonicalArchive> {
  const resolved = resolveLimits(limits);
  const id = randomBytes(8).toString("hex");
  await mkdir(workDir, { recursive: true });
  const tree = join(workDir, `extract-${id}`);
  const path = join(workDir, `canonical-${id}.tar.gz`);
  await extractArchive({ path: uploadPath }, tree, resolved);
  try {
    const packed = await packDirectory(tree, path, {
      maxBytes: limits.maxArchiveBytes ?? ARCHIVE_MAX_BYTES,
      maxTotalBytes: resolved.maxTotalBytes,
      ...(opts.gzipLevel === undefined ? {} : { gzipLevel: opts.gzipLevel }),
    });
    return { path, ...packed };
  } finally {
    await rm(tree, { recursive: true, force: true });
  }
}
