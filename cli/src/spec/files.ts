/**
 * The files a spec names. Paths are relative to the YAML file's directory and must stay inside
 * the project directory (project-root.ts; symlinks resolved): a spec checked out from someone
 * else's repository must not be able to upload `~/.ssh/id_rsa` as "function code".
 *
 * Packages are packed here into the registry's canonical form (@fizz/kit/archive, the code the
 * registry runs on every upload), so their digest is known before anything is sent: an unchanged
 * directory is recognised without uploading it.
 */
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { open, realpath, stat } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { ARCHIVE_MAX_BYTES } from "@fizz/events";
import {
  canonicalize,
  DEFAULT_ARCHIVE_LIMITS,
  detectFormat,
  packDirectory,
} from "@fizz/kit/archive";
import { reasonOf } from "../archive-upload.js";
import type { RawDocument } from "./yaml-docs.js";

export type Outcome<T> = { ok: T } | { problem: string };

/** The real path of `rel`, if it exists and is inside the document's project directory. */
export async function resolveInside(doc: RawDocument, rel: string): Promise<Outcome<string>> {
  if (isAbsolute(rel))
    return { problem: `${JSON.stringify(rel)}: must be relative to the YAML file's directory` };
  const shown = join(dirname(doc.file), rel);
  let real: string;
  try {
    real = await realpath(resolve(doc.dir, rel));
  } catch (err) {
    return { problem: `${JSON.stringify(rel)}: ${reasonOf(err)} (${shown})` };
  }
  const root = doc.root;
  if (root.refused !== undefined) {
    return {
      problem: `${JSON.stringify(rel)}: the project directory would be ${root.path}, ${root.refused} (${root.what}); a spec may only name files inside a project directory, so put the spec directory in the project's git repository or in a directory of its own`,
    };
  }
  const inside = relative(root.path, real);
  if (inside === ".." || inside.startsWith(`..${sep}`) || isAbsolute(inside)) {
    return {
      problem: `${JSON.stringify(rel)} is outside the project directory ${root.path} (${root.what}); a spec may only name files under it`,
    };
  }
  return { ok: real };
}

export interface CodeFile {
  bytes: Buffer;
  /** `sha256:<hex>`: what the registry stores as spec.code.digest. */
  digest: string;
}

/** A function's code file: a regular file of at most `maxBytes`, read whole. */
export async function readCode(
  doc: RawDocument,
  rel: string,
  maxBytes: number,
  /**
   * Files already read in this load, by real path: a spec of 10,000 functions sharing one file
   * reads it once and holds one buffer (and every function gets the same bytes, even if the file
   * changes meanwhile). Whether the path is allowed is still checked per document above.
   */
  read?: Map<string, CodeFile>,
): Promise<Outcome<CodeFile>> {
  const real = await resolveInside(doc, rel);
  if ("problem" in real) return real;
  const known = read?.get(real.ok);
  if (known) return { ok: known };
  const out = await readRegular(real.ok, rel, maxBytes);
  if ("ok" in out) read?.set(real.ok, out.ok);
  return out;
}

async function readRegular(
  real: string,
  rel: string,
  maxBytes: number,
): Promise<Outcome<CodeFile>> {
  let handle;
  try {
    // O_NONBLOCK: a FIFO must not hang the CLI before fstat can refuse it.
    handle = await open(real, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    return { problem: `${JSON.stringify(rel)}: ${reasonOf(err)}` };
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) return { problem: `${JSON.stringify(rel)} is not a regular file` };
    if (st.size > maxBytes)
      return {
        problem: `${JSON.stringify(rel)} is ${st.size} bytes, over the limit of ${maxBytes} (FIZZ_CODE_MAX_BYTES)`,
      };
    if (st.size === 0) return { problem: `${JSON.stringify(rel)} is empty` };
    const bytes = await handle.readFile();
    if (bytes.length > maxBytes)
      return { problem: `${JSON.stringify(rel)} grew over the limit of ${maxBytes} bytes` };
    return { ok: { bytes, digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}` } };
  } finally {
    await handle.close();
  }
}

export interface ArchivePath {
  real: string;
  isDirectory: boolean;
}

/** A package's source or deployment: a directory, or a zip/tar/tar.gz file. */
export async function checkArchivePath(
  doc: RawDocument,
  rel: string,
): Promise<Outcome<ArchivePath>> {
  const real = await resolveInside(doc, rel);
  if ("problem" in real) return real;
  const st = await stat(real.ok);
  if (st.isDirectory()) return { ok: { real: real.ok, isDirectory: true } };
  if (st.isFile() && (await detectFormat(real.ok)) !== undefined)
    return { ok: { real: real.ok, isDirectory: false } };
  return {
    problem: `${JSON.stringify(rel)} is not a directory or an archive (.zip, .tar, .tar.gz)`,
  };
}

export interface PackedArchive {
  /** The canonical tar.gz, in the work dir. */
  path: string;
  digest: string;
  size: number;
  files: number;
  /** Links and special files left out, as the registry would leave them out. */
  skipped: string[];
}

/**
 * The canonical tar.gz of a directory or an archive, written into `workDir`: the same bytes the
 * registry would store for it, hence the same digest (as long as both use the same zlib, which
 * they do when run from one checkout; a different zlib costs an upload, never a wrong answer:
 * apply compares the digest the registry answers too).
 */
export async function packCanonical(
  path: ArchivePath,
  workDir: string,
  name: string,
): Promise<Outcome<PackedArchive>> {
  try {
    if (path.isDirectory) {
      const out = join(workDir, `${name}.tar.gz`);
      const packed = await packDirectory(path.real, out, {
        maxBytes: ARCHIVE_MAX_BYTES,
        maxTotalBytes: DEFAULT_ARCHIVE_LIMITS.maxTotalBytes,
      });
      return { ok: { path: out, ...packed } };
    }
    const canonical = await canonicalize(path.real, join(workDir, name), {
      maxArchiveBytes: ARCHIVE_MAX_BYTES,
    });
    return { ok: canonical };
  } catch (err) {
    return { problem: (err as Error).message };
  }
}
