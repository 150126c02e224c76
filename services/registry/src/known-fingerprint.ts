import { createHash, hkdfSync, type Hash } from "node:crypto";
import type { BigIntStats } from "node:fs";
import { open, readdir, readFile, stat } from "node:fs/promises";
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
 *   changes more often than needed, never less. Each file's SHA-256 comes from the build's
 *   manifest (dist/code-fingerprint.json, writeCodeManifest) when it still describes the dir: a
 *   few stats instead of reading and hashing ~6 MB (~60 ms of CPU) at every start. See
 *   readManifest for why the manifest cannot vouch for code it did not hash; when it does not
 *   apply (none: an older build, or a dist copied elsewhere; a build in progress; a file replaced
 *   or added since), the files are hashed here as before, which needs no trust in the manifest.
 * - Paths are joined as `${dir}/${rel}`, never with path.join or path.relative: normalizing ~100
 *   paths char by char ran node's normalizeString past V8's interrupt budget, TurboFan compiled
 *   it, and running TurboFan faults ~3.5 MB of the node binary's compiler code in for good
 *   (smaps: all of the 3.3-4 MB of idle RSS persistence cost was /usr/bin/node's pages; --trace-opt
 *   showed that one compile). Not the reads: hashing through a small buffer cost the same.
 * - What is hashed or vouched for is what is on disk, not what was loaded. A file (or the
 *   manifest) written after this process started (its mtime or ctime, which a rename into place
 *   also sets, later than `loadedAt`) means a rebuild may have landed between loading the code
 *   and fingerprinting it: the old code would learn digests under the new build's fingerprint,
 *   which the new build then trusts. That refuses (CodeChangedError): persistence stays off for
 *   this process; the next start fingerprints again. So a fingerprint from either path describes
 *   files unchanged since before the code was loaded, that is, the code loaded.
 * - From sources (tsx: tests, FIZZ_FROM_SOURCE): every .ts under shared/events/src (the schemas)
 *   and services/registry/src (parse, encode), the root package-lock.json and the installed zod's
 *   and croner's package.json (the dependencies the schemas import).
 * - Both: process.version and V8's (JSON.stringify and JSON.parse are the runtime's), and
 *   KNOWN_FORMAT.
 *
 * A JSON-schema export of the schemas would miss refinements and transforms; hashing the code does
 * not. Undefined when the running module is neither (persistence then stays off). `onHashing` is
 * told why a dist's manifest was not used.
 */
export async function codeFingerprint(
  moduleUrl: string = import.meta.url,
  loadedAt: number = performance.timeOrigin,
  onHashing?: (why: string) => void,
): Promise<string | undefined> {
  const file = fileURLToPath(moduleUrl);
  const h: CodeHash = { hash: createHash("sha256"), loadedAt };
  h.hash.update(`fizz-known-json\0${KNOWN_FORMAT}\0${process.version}\0${process.versions.v8}\0`);
  if (file.endsWith(".mjs")) {
    let dist = path.dirname(file);
    if (path.basename(dist) === "chunks") dist = path.dirname(dist);
    const files = await bundleFiles(dist);
    const manifest = await readManifest(dist, files, loadedAt);
    if (typeof manifest === "string") {
      onHashing?.(manifest);
      for (const rel of files) await hashFile(h, dist, rel);
    } else {
      for (const rel of files) addFile(h, rel, manifest.get(rel));
    }
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

/** What the fingerprint takes of one file; the manifest gives the same for a bundle. */
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

/** scripts/lib/service-build.mjs's CODE_MANIFEST, in the dist dir. */
const MANIFEST = "code-fingerprint.json";

/** A bundle's entry in the manifest: its SHA-256 and the identity of the file hashed. */
interface ManifestEntry {
  size: string;
  ino: string;
  mtimeNs: string;
  ctimeNs: string;
  sha256: string;
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
 * Each bundle's digest from the build's manifest, with no file read but the manifest; or why it
 * does not apply (the caller then hashes the files). Why trusting it is as sound as hashing:
 *
 * - The build (writeCodeManifest) hashed each file through a descriptor and recorded that file's
 *   inode, size, mtime and ctime as fstat gave them. A digest is taken only for a file that still
 *   has all four: a build replaces a file by renaming a new one into place (another inode, and a
 *   new ctime), a write in place changes its times. So a rebuild landing at any moment, before or
 *   after the manifest, leaves a file the manifest does not vouch for, never a wrong digest.
 * - The names must be exactly the dir's .mjs files: a file added (a new chunk) or removed since
 *   the manifest, an older manifest beside a newer build's half-written files, do not apply.
 * - A bundle whose mtime is later than the manifest's: written after it, a build in progress.
 *   (Implied by the identities; kept as the plain statement of the rule.)
 * - As for hashing, nothing (the manifest included) may be newer than the process's start, or
 *   CodeChangedError: the files stat'ed are then the files loaded. The identities pin the
 *   contents the build hashed to those files, so the fingerprint describes the code running.
 *
 * The manifest is not a trust boundary against someone who can write the dist dir: they can
 * change the code itself. Its digests are taken from whoever built, like the bundles.
 */
async function readManifest(
  dist: string,
  files: string[],
  loadedAt: number,
): Promise<Map<string, FileDigest> | string> {
  const file = path.join(dist, MANIFEST);
  let text: string;
  let own: BigIntStats;
  try {
    const fh = await open(file, "r");
    try {
      own = await fh.stat({ bigint: true });
      checkLoadedBefore({ loadedAt }, file, own);
      text = await fh.readFile("utf8");
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "no manifest";
    throw err;
  }
  // Every bundle's times first: one written after the start refuses, whatever else is wrong.
  const stats = new Map<string, BigIntStats>();
  for (const rel of files) {
    // Not path.join: see codeFingerprint (node's normalizeString hot enough for TurboFan).
    const file = `${dist}/${rel}`;
    try {
      const st = await stat(file, { bigint: true });
      checkLoadedBefore({ loadedAt }, file, st);
      stats.set(rel, st);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  let listed: Record<string, ManifestEntry>;
  try {
    const m = JSON.parse(text) as { format?: unknown; files?: Record<string, ManifestEntry> };
    if (m.format !== 1 || typeof m.files !== "object" || m.files === null)
      return "manifest of another format";
    listed = m.files;
  } catch {
    return "manifest unreadable";
  }
  if (Object.keys(listed).sort().join("\0") !== files.join("\0"))
    return "the manifest lists other files than the dist dir holds";
  const digests = new Map<string, FileDigest>();
  for (const rel of files) {
    const e = listed[rel];
    const st = stats.get(rel);
    if (st === undefined || e === undefined || !/^[0-9a-f]{64}$/.test(String(e.sha256)))
      return `${rel}: gone, or no digest`;
    if (st.mtimeNs > own.mtimeNs) return `${rel} is newer than the manifest: a build in progress`;
    if (
      String(st.size) !== e.size ||
      String(st.ino) !== e.ino ||
      String(st.mtimeNs) !== e.mtimeNs ||
      String(st.ctimeNs) !== e.ctimeNs
    )
      return `${rel} is not the file the manifest hashed`;
    digests.set(rel, { size: Number(st.size), sha256: e.sha256 });
  }
  return digests;
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
      codeFingerprint(undefined, undefined, (why) =>
        logger.info(
          { why },
          "code fingerprint: hashing the bundles (their manifest does not apply)",
        ),
      ),
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
