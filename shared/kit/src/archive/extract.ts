/** Extraction of one archive into a fresh directory (the checks live in sink.ts). */
import { open, mkdir, rm, stat } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { FizzError } from "@fizz/events";
import { ArchiveError } from "./errors.js";
import { resolveLimits, type ArchiveLimits } from "./limits.js";
import { ExtractSink } from "./sink.js";
import { extractTar } from "./tar.js";
import { extractZip } from "./zip.js";

export interface ExtractResult {
  /** Entries written: files, directories and links. */
  files: number;
  /** Bytes of file data written. */
  totalBytes: number;
}

export type ArchiveFormat = "tar" | "tar.gz" | "zip";

/** The format from the first bytes: gzip 1f 8b, zip PK\3\4 (or PK\5\6 when empty), ustar at offset 257. */
export async function detectFormat(path: string): Promise<ArchiveFormat | undefined> {
  const fh = await open(path, "r");
  try {
    const head = Buffer.alloc(262);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const b = head.subarray(0, bytesRead);
    if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return "tar.gz";
    if (
      b.length >= 4 &&
      b[0] === 0x50 &&
      b[1] === 0x4b &&
      ((b[2] === 3 && b[3] === 4) || (b[2] === 5 && b[3] === 6))
    ) {
      return "zip";
    }
    if (b.length >= 262 && b.subarray(257, 262).toString("latin1") === "ustar") return "tar";
    return undefined;
  } finally {
    await fh.close();
  }
}

/**
 * Extracts the archive at `source.path` into `destDir`, which must not exist yet. On any refusal
 * or failure `destDir` is removed, so nothing half-extracted is left. Refusals are ArchiveError
 * (code ARCHIVE_UNSAFE, 400) naming the entry and the rule.
 */
export async function extractArchive(
  source: { path: string },
  destDir: string,
  limits?: Partial<ArchiveLimits>,
): Promise<ExtractResult> {
  const format = await detectFormat(source.path);
  if (format === undefined) throw new ArchiveError(basename(source.path), "unknown archive format");
  const { size } = await stat(source.path);
  const root = resolve(destDir);
  await mkdir(dirname(root), { recursive: true });
  try {
    await mkdir(root, { mode: 0o755 });
  } catch (err) {
    throw new FizzError("VALIDATION_FAILED", `extraction directory ${root} already exists`, {
      cause: err,
    });
  }
  const sink = new ExtractSink(root, resolveLimits(limits), size);
  try {
    if (format === "zip") await extractZip(source.path, sink);
    else await extractTar(source.path, sink);
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  return { files: sink.files, totalBytes: sink.totalBytes };
}
