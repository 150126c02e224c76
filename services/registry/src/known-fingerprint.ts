import { createHash, hkdfSync, type Hash } from "node:crypto";
import type { BigIntStats } from "node:fs";
import { open, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "@fizz/kit";
import type { RegistryConfig } from "./config";
import { parseKey } from "./secret-box";

/**
 * Bumped whenever what a persisted entry means changes (the digest, the seal's input, what
 * "known" promises: readable under the schema and canonical), so entries of another meaning are
 * never read as this one's.
 */
export const KNOWN_FORMAT = 2;

/**
 * A fingerprint of the code that decides whether a stored text is readable and canonical: a
 * digest learnt and persisted by one build may be trusted only by the same build (KnownJson,
 * known-persist.ts). Soundness rests on this: if two processes share a fingerprint, they run the
 * same schemas, parse and encode; any code change gives another fingerprint, whose entries start
 * empty. It is the hash of each covered file's path, length and SHA-256.
 *
 * - Bundled (dist/<service>.mjs and dist/chunks/*.mjs, scripts/lib/service-build.mjs bundles every
 *   dependency, zod included): every .mjs file in the dist dir and its chunks/. A superset of what
 *   the registry loads (other services' entries, chunks an older build left for 24 h), so it
 *   changes more often than needed, never less. ~6 MB read and hashed, ~60 ms of CPU overlapping
 *   the connects. A build-time manifest of digests (stat instead of read) was built and reviewed
 *   sound in session 22, and dropped: it helps only launcher starts (the images copy the bundles
 *   without it) and its soundness rests on inode and timestamp identity.
 * - Paths are joined as `${dir}/${rel}`, never with path.join or path.relative: normalizing ~100
 *   paths char by char ran node's normalizeString past V8's interrupt budget, TurboFan compiled
 *   it, and running TurboFan faults ~3.5 MB of the node binary's compiler code in for good
 *   (smaps: all of the 3.3-4 MB of idle RSS persistence cost was /usr/bin/node's pages; --trace-opt
 *   showed that one compile). Not the reads: hashing through a small buffer cost the same.
 * - What is hashed is what is on disk, not what was loaded. A file written after this process
 *   started (its mtime or ctime, which a rename into place also sets, later than `loadedAt`)
 *   means a rebuild may have landed between loading the code and fingerprinting it: the old code
 *   would learn digests under the new build's fingerprint,
 *   which the new build then trusts. That refuses (CodeChangedError): persistence stays off for
 *   this process; the next start fingerprints again. So the fingerprint describes files unchanged
 *   since before the code was loaded, that is, the code loaded.
 * - From sources (tsx: tests, FIZZ_FROM_SOURCE): every .ts under shared/events/src (the schemas)
 *   and services/registry/src (parse, encode), the root package-lock.json and the installed zod's
 *   and croner's package.json (the dependencies the schemas import).
 * - Both: process.version and V8's (JSON.stringify and JSON.parse are the runtime's), and
 *   KNOWN_FORMAT.
 *
 * A JSON-schema export of the schemas would miss refinements and transforms; hashing the code does
 * not. Undefined when the running module is neither (persistence then stays off).
 */
export async function codeFingerprint(
  moduleUrl: string = import.meta.url,
  loadedAt: number = performance.timeOrigin,
): Promise<string | undefined> {
  const file = fileURLToPath(moduleUrl);
  const h: CodeHash = { hash: createHash("sha256"), loadedAt };
  h.hash.update(`fizz-known-json\0${KNOWN_FORMAT}\0${process.version}\0${process.versions.v8}\0`);
  if (file.endsWith(".mjs")) {
    let dist = path.dirname(file);
    if (path.basename(dist) === "chunks") dist = path.dirname(dist);
    for (const rel of await bundleFiles(dist)) await hashFile(h, dist, rel);
  } else if (file.endsWith(".ts")) {
    // services/registry/src/<this file>: the repository root is three levels up.
    const root = path.resolve(path.dirname(file), "..", "..", "..");
    await hashDir(h, path.join(root, "shared", "events", "src"), ".ts", true);
    await hashDir(h, path.join(root, "services", "registry", "src"), ".ts", true);
    for (const f of [
      "package-lock.json",
      "node_modules/zod/package.json",
      "node_modules/croner/package.json",
    ])
      await hashFile(h, root, f);
  } else {
    return undefined;
  }
  return h.hash.digest("hex").slice(0, 32);
}

/** A file hashed into a code fingerprint was written after the process loaded its code. */
export class CodeChangedError extends Error {
  readonly code = "CODE_CHANGED";
}

/** The fingerprint's hash, and when the code it stands for was loaded (hashFile checks it). */
interface CodeHash {
  hash: Hash;
  loadedAt: number;
}

/** What the fingerprint takes of one file. */
interface FileDigest {
  size: number;
  sha256: string;
}

function addFile(h: CodeHash, rel: string, d: FileDigest | undefined): void {
  h.hash.update(`${rel}\0${d?.size ?? -1}\0${d?.sha256 ?? ""}\0`);
}

function checkLoadedBefore(h: { loadedAt: number }, file: string, st: BigIntStats): void {
  if (Number(st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs) / 1e6 > h.loadedAt)
    throw new CodeChangedError(
      `${file} was written after this process started: the code hashed may not be the code running`,
    );
}

/** Every file ending in `ext` under `dir` (recursively when asked), in name order. */
async function hashDir(h: CodeHash, dir: string, ext: string, recursive: boolean): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true, recursive });
  const files = entries
    .filter((e) => e.isFile() && e.name.endsWith(ext))
    .map((e) => `${e.parentPath}/${e.name}`.slice(dir.length + 1))
    .sort();
  for (const rel of files) await hashFile(h, dir, rel);
}

/**
 * The file's path (relative to `base`), length and SHA-256; a missing one as missing. Throws
 * CodeChangedError when it was written after the code was loaded (times and contents read
 * through one descriptor, so of the same file).
 */
async function hashFile(h: CodeHash, base: string, rel: string): Promise<void> {
  // Not path.join or path.relative: see codeFingerprint.
  const file = `${base}/${rel}`;
  let digest: FileDigest | undefined;
  try {
    const fh = await open(file, "r");
    try {
      checkLoadedBefore(h, file, await fh.stat({ bigint: true }));
      const bytes = await fh.readFile();
      digest = { size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") };
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  addFile(h, rel, digest);
}

/** The .mjs files of `dist` and its chunks/, relative to `dist`, in name order. */
async function bundleFiles(dist: string): Promise<string[]> {
  const mjs = async (dir: string) =>
    (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isFile() && e.name.endsWith(".mjs"))
      .map((e) => e.name);
  const chunks = (await mjs(path.join(dist, "chunks"))).map((n) => `chunks/${n}`);
  return [...(await mjs(dist)), ...chunks].sort();
}

/**
 * The key persisted entries are sealed with, derived from the secrets key (FIZZ_SECRETS_KEY_FILE:
 * a file only the registry reads). Anyone who can write Redis can plant entries; without this key
 * they cannot seal one, so the registry never trusts a text it did not check. The admin token is
 * not used: clients (the CLI, CI) hold it too. Undefined when no key file is set or it does not
 * exist (persistence is then off); a malformed one was already refused by loadSecretBox.
 */
export async function knownSealKey(
  secretsKeyFile: string | undefined,
): Promise<Buffer | undefined> {
  if (secretsKeyFile === undefined) return undefined;
  let raw: Buffer;
  try {
    raw = await readFile(secretsKeyFile);
  } catch {
    return undefined;
  }
  const key = parseKey(raw);
  if (!key) return undefined;
  // A separate key (HKDF), so the seal never uses the encryption key itself.
  return Buffer.from(hkdfSync("sha256", key, "", "fizz-registry-known-json-seal", 32));
}

/**
 * The fingerprint and seal key the known texts' digests persist under (known-persist.ts), or
 * undefined: switched off, no secrets key (nothing only the registry holds to seal them with), or
 * code the fingerprint cannot cover.
 */
export async function knownPersistence(
  config: RegistryConfig,
  haveSecrets: boolean,
  logger: Logger,
): Promise<{ fingerprint: string; key: Buffer } | undefined> {
  if (!config.persistKnownTexts || !haveSecrets) {
    logger.info("known stored texts are not persisted: each start checks every stored object");
    return undefined;
  }
  try {
    const [key, fingerprint] = await Promise.all([
      knownSealKey(config.secretsKeyFile),
      codeFingerprint(),
    ]);
    if (key && fingerprint) {
      logger.info({ fingerprint }, "known stored texts persist across restarts");
      return { key, fingerprint };
    }
  } catch (err) {
    logger.warn({ err: (err as Error).message }, "code fingerprint not computed");
  }
  logger.info("known stored texts are not persisted: each start checks every stored object");
  return undefined;
}
