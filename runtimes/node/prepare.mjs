// @ts-check
// Builds the Node runtime into ONE file, runtimes/node/.build/server.cjs (gitignored): server.mjs
// and its src/ modules bundled by esbuild as CommonJS. What an empty-pool start saves: the ~17
// module resolutions, file reads and the ES module loader's set-up (CJS entry: Node never starts
// its ESM loader unless a function is an ES module). Measured on 2 cores: ~20 ms of main-thread
// CPU less from spawn to the first answer. The sources stay the reference and run as they are
// (node server.mjs); the bundle is only ever what they are.
//
// Lazy stays lazy: the modules server.mjs imports with import() become wrappers that run on first
// use, and tar (the archive form's one dependency) stays an external require(), resolved from
// runtimes/node/node_modules (or the workspace's) only when a package is specialized.
//
// Keyed by a hash of its inputs (the files esbuild read, this script, package.json): a rerun with
// nothing changed only hashes them. The bundle is written to a temporary file and renamed, then the
// stamp: a launcher never starts a half-written file, and a stamp never vouches for a bundle that
// is not the one its hash names.
//
// Then a V8 code cache of it, .build/server.cjs.cache, that start-cached.cjs starts it with, made by
// code-cache-build.mjs (running the bundle once as an empty-pool start runs). Written like the
// bundle, its SHA-256 in the stamp; a cache that cannot be made (or is not current) only means the
// bundle starts without one.
//
// Usage: `node runtimes/node/prepare.mjs` (prints {"ok":true,"file":...}), or
// `import { prepare, prepared }` → { ok, reason?, file? }.
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { makeCache, NODE_KEY } from "./code-cache-build.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
export const BUILD_DIR = join(HERE, ".build");
export const BUNDLE = join(BUILD_DIR, "server.cjs");
export const CACHE = join(BUILD_DIR, "server.cjs.cache");
/** What starts the bundle with its cache. */
export const LOADER = join(HERE, "start-cached.cjs");
const STAMP = join(BUILD_DIR, "server.cjs.stamp.json");
/**
 * Besides what esbuild reads: how it is built, the dependency it leaves external, the loader, how
 * its cache is made (an edit to any of them builds again).
 */
export const ALWAYS = ["prepare.mjs", "package.json", "start-cached.cjs", "code-cache-build.mjs"];
/**
 * @typedef {{ file: string, sha256: string, loader: string }} Cache
 * @typedef {{ ok: true, file: string, built: boolean, sha256: string, cache?: Cache } | { ok: false, reason: string }} Result
 * @typedef {{ hash: string, inputs: string[], bundle: string, cache?: string, node?: string }} Stamp
 */

/**
 * @param {string[]} inputs paths relative to runtimes/node
 * @param {(input: string) => Uint8Array} [read] the bytes of one (default: as on disk now)
 */
function hashOf(inputs, read = (input) => readFileSync(join(HERE, input))) {
  const h = createHash("sha256");
  for (const input of [...inputs].sort()) {
    h.update(input).update("\0");
    h.update(read(input)).update("\0");
  }
  return h.digest("hex");
}

/** @param {Uint8Array} data */
const sha256 = (data) => createHash("sha256").update(data).digest("hex");

/**
 * Whether only this uid (the builder) or root could have written `path`: owned by one of them,
 * writable by neither group nor others, and not a symbolic link. Instances of every function run
 * this file: a .build, bundle or stamp another user can write (a directory left 0777, planted by
 * another uid) would let that user's function choose the code of all the others, stamp included.
 * @param {string} path
 * @param {"dir" | "file"} kind
 */
function ownedSafely(path, kind) {
  const st = lstatSync(path);
  const uid = process.getuid?.() ?? 0;
  return (
    (kind === "dir" ? st.isDirectory() : st.isFile()) &&
    (st.uid === uid || st.uid === 0) &&
    (st.mode & 0o022) === 0
  );
}

/**
 * The bundle when it is there and its stamp matches the sources as they are now; undefined
 * otherwise (never built, a source changed or is gone, a build cut off before its stamp).
 * @returns {string | undefined}
 */
export function prepared() {
  return current()?.file;
}

/**
 * The code cache when prepared() has a bundle and the cache next to it passes the same checks:
 * owned by this uid or root, writable by no one else, not a link, the bytes the stamp names. A
 * cache is bytecode that every instance runs: one that fails any of them is never vouched for.
 * @returns {string | undefined}
 */
export function preparedCache() {
  return current()?.cache?.file;
}

/**
 * prepared(), with the SHA-256 of the bundle (and of its cache) it vouches for: the process
 * backend compares them with the files it then finds there (another builder may have renamed its
 * own over them meanwhile).
 * @returns {{ file: string, sha256: string, stamp: Stamp, cache: Cache | undefined } | undefined}
 */
function current() {
  try {
    if (!ownedSafely(BUILD_DIR, "dir") || !ownedSafely(STAMP, "file")) return undefined;
    if (!ownedSafely(BUNDLE, "file")) return undefined;
    /** @type {Stamp} */
    const stamp = JSON.parse(readFileSync(STAMP, "utf8"));
    if (hashOf(stamp.inputs) !== stamp.hash) return undefined;
    // The bundle's own hash too: one replaced or cut short is built again.
    if (sha256(readFileSync(BUNDLE)) !== stamp.bundle) return undefined;
    return { file: BUNDLE, sha256: stamp.bundle, stamp, cache: currentCache(stamp) };
  } catch {
    return undefined;
  }
}

/** @param {Stamp} stamp */
function currentCache(stamp) {
  try {
    if (typeof stamp.cache !== "string" || stamp.node !== NODE_KEY) return undefined;
    if (!ownedSafely(CACHE, "file")) return undefined;
    return sha256(readFileSync(CACHE)) === stamp.cache
      ? { file: CACHE, sha256: stamp.cache, loader: LOADER }
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Makes the cache for the bundle in place and rewrites the stamp with its hash (or without one).
 * @param {Stamp} stamp of the bundle in place
 * @param {(line: string) => void} log
 * @returns {Promise<Cache | undefined>}
 */
async function writeCache(stamp, log) {
  const data = await makeCache({ cache: CACHE, loader: LOADER, bundle: stamp.bundle, log });
  /** @type {Stamp} */
  const next = { hash: stamp.hash, inputs: stamp.inputs, bundle: stamp.bundle };
  if (data) {
    writeAtomically(CACHE, data, 0o644);
    next.cache = sha256(data);
    next.node = NODE_KEY;
  } else {
    rmSync(CACHE, { force: true });
  }
  writeAtomically(STAMP, `${JSON.stringify(next)}\n`, 0o644);
  return next.cache ? { file: CACHE, sha256: next.cache, loader: LOADER } : undefined;
}

/**
 * @param {string} file
 * @param {string | Uint8Array} data
 * @param {number} mode
 */
function writeAtomically(file, data, mode) {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    writeFileSync(tmp, data, { mode });
    // Instance uids run it: readable by others whatever the umask was.
    chmodSync(tmp, mode);
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Builds the bundle unless the one there is current.
 * @param {{ log?: (line: string) => void }} [opts]
 * @returns {Promise<Result>}
 */
export async function prepare({ log = () => undefined } = {}) {
  const now = current();
  if (now) {
    // The bundle is current; its cache missing or not to be trusted: that alone is made again.
    const cache = now.cache ?? (await writeCache(now.stamp, log));
    return { ok: true, file: now.file, built: false, sha256: now.sha256, ...(cache && { cache }) };
  }
  let esbuild;
  try {
    esbuild = await import("esbuild");
  } catch (err) {
    return { ok: false, reason: `esbuild is not installed: ${/** @type {Error} */ (err).message}` };
  }
  /** The bytes esbuild compiled, by input: the stamp hashes exactly these, never a later edit. */
  /** @type {Map<string, Uint8Array>} */
  const compiled = new Map();
  const result = await esbuild.build({
    absWorkingDir: HERE,
    entryPoints: ["server.mjs"],
    bundle: true,
    write: false,
    platform: "node",
    target: "node20",
    format: "cjs",
    // No tsconfig.json read: none is a stamped input, and the image's context has none, so its
    // bundle differed from the tree's (one "use strict" per module from tsconfig.base.json).
    tsconfigRaw: {},
    // ES modules are strict; the bundle must be too (esbuild adds it per module wrapper only).
    banner: { js: '"use strict";' },
    external: ["tar", "tar/*"],
    outfile: BUNDLE,
    legalComments: "none",
    logLevel: "silent",
    plugins: [
      {
        name: "fizz-inputs",
        setup(build) {
          build.onLoad({ filter: /\.m?js$/ }, (args) => {
            const contents = readFileSync(args.path);
            compiled.set(relative(HERE, args.path), contents);
            return { contents, loader: "js" };
          });
        },
      },
    ],
  });
  const out = result.outputFiles[0];
  if (!out) return { ok: false, reason: "esbuild wrote no output" };
  const inputs = [...new Set([...ALWAYS, ...compiled.keys()])];
  // A source edited while esbuild ran: the stamp names what was compiled, so it no longer matches
  // the file, and the next prepare builds again.
  const hash = hashOf(inputs, (input) => compiled.get(input) ?? readFileSync(join(HERE, input)));
  let safe = true;
  try {
    safe = ownedSafely(BUILD_DIR, "dir");
  } catch {
    // Not there yet.
  }
  // Not ours (or writable by others, or a link elsewhere): whatever is in it is not trusted either.
  // rm removes a link itself, never what it points to.
  if (!safe) rmSync(BUILD_DIR, { recursive: true, force: true });
  mkdirSync(BUILD_DIR, { recursive: true, mode: 0o755 });
  chmodSync(BUILD_DIR, 0o755);
  // The old cache goes before the new bundle comes: V8 checks little more than the source's
  // length, and would run the old bytecode for a new bundle of the same length that an instance
  // started while the new cache is made (~0.3 s) found next to it (review RV2).
  rmSync(CACHE, { force: true });
  writeAtomically(BUNDLE, out.contents, 0o644);
  /** @type {Stamp} */
  const stamp = { hash, inputs, bundle: sha256(out.contents) };
  // The stamp of the bundle alone first: a cache that cannot be made leaves a usable build.
  writeAtomically(STAMP, `${JSON.stringify(stamp)}\n`, 0o644);
  log(`fizz: built ${relative(process.cwd(), BUNDLE)} from ${inputs.length} files`);
  const cache = await writeCache(stamp, log);
  return { ok: true, file: BUNDLE, built: true, sha256: stamp.bundle, ...(cache && { cache }) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  prepare({ log: (l) => console.error(l) }).then(
    (r) => {
      console.log(JSON.stringify(r));
      process.exitCode = r.ok ? 0 : 1;
    },
    (err) => {
      console.log(JSON.stringify({ ok: false, reason: String(err?.message ?? err) }));
      process.exitCode = 1;
    },
  );
}
