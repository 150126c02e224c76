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
// Then a V8 code cache of it, .build/server.cjs.cache, that start-cached.cjs starts it with: made
// by running the bundle once in a child as an empty-pool start runs (no rehearsal; a specialize of
// a tiny function and its first call) and asking V8 for the cache after that, so it holds the
// functions compiled lazily on that path too (~89 KB; ~3-4 ms less instance CPU per empty-pool
// start; a cache taken before anything ran holds the top level only and saved ~1 ms). Written
// like the bundle, its SHA-256 in the stamp; a cache that cannot be made (or is not current) only
// means the bundle starts without one.
//
// Usage: `node runtimes/node/prepare.mjs` (prints {"ok":true,"file":...}), or
// `import { prepare, prepared }` → { ok, reason?, file? }.
import { spawn } from "node:child_process";
import { request } from "node:http";
import { createServer } from "node:net";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
export const BUILD_DIR = join(HERE, ".build");
export const BUNDLE = join(BUILD_DIR, "server.cjs");
export const CACHE = join(BUILD_DIR, "server.cjs.cache");
/** What starts the bundle with its cache. */
export const LOADER = join(HERE, "start-cached.cjs");
const STAMP = join(BUILD_DIR, "server.cjs.stamp.json");
/** Besides what esbuild reads: how it is built, the dependency it leaves external, the loader. */
const ALWAYS = ["prepare.mjs", "package.json", "start-cached.cjs"];
/**
 * The Node (so the V8) a cache was made by: V8 rejects another version's cache, and after a node
 * upgrade one stamped before it would be read and rejected at every start, never made again.
 * The child that makes it and the instances run this same executable (process.execPath).
 */
const NODE_KEY = `${process.version} ${process.arch}`;
/** Making the cache runs the bundle once: well under a second; a hang must not hold the build. */
const CACHE_TIMEOUT_MS = 20_000;

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
 * Runs the bundle (through the loader, so the cache is made for the very text it will be used
 * with) as for a waiting request, specializes and calls a tiny function, then has it write V8's
 * cache. Of this process's environment only PATH and TMPDIR go to the child: no NODE_OPTIONS (flags V8 would then reject the cache
 * under, instances have none), no credentials of whoever runs the build.
 * @param {string} bundle the SHA-256 of the bundle stamped: the child makes no cache of another
 * @param {(line: string) => void} log
 * @returns {Promise<Uint8Array | undefined>}
 */
async function makeCache(bundle, log) {
  const tmp = `${CACHE}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const port = await freePort();
  const token = randomBytes(16).toString("hex");
  // The tiny function's work directory, as an instance has its own (FIZZ_WORKDIR): without one
  // the runtime makes a temp dir nobody removes, one per cache made (review RV2).
  const work = mkdtempSync(join(tmpdir(), "fizz-code-cache-"));
  /** @type {Record<string, string>} */
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    PORT: String(port),
    HOST: "127.0.0.1",
    FIZZ_INSTANCE_ID: CACHE_INSTANCE,
    FIZZ_SPECIALIZE_TOKEN: token,
    FIZZ_WORKDIR: work,
    // Started as for a waiting request: the empty-pool path's functions, not the rehearsal's and
    // the archive preload's (a cache made after those was ~8% bigger and saved less: ~2 ms).
    FIZZ_WARM_UP: "0",
    // Its stdin is our pipe: it exits once we are gone (killed by the poolkeeper's timeout or an
    // operator), instead of staying up as this uid with no one to stop it (review RV2).
    FIZZ_PARENT_STDIN: "1",
  };
  if (process.env.TMPDIR) env.TMPDIR = process.env.TMPDIR;
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [LOADER, `--write-cache=${tmp}`, `--bundle-sha256=${bundle}`],
      {
        env: { ...env, FIZZ_READY_FD: "3" },
        // stdin a pipe held open: the runtime takes its EOF as its parent gone.
        stdio: ["pipe", "ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (d) => (stderr = (stderr + d).slice(-2000)));
    const timer = setTimeout(() => child.kill("SIGKILL"), CACHE_TIMEOUT_MS);
    child.stdio[3]?.once("data", () => {
      firstCall(port, token).then(
        () => child.kill("SIGUSR2"),
        (err) => {
          stderr += String(err);
          child.kill("SIGKILL");
        },
      );
    });
    child.stdio[3]?.on("error", () => undefined);
    child.on("error", () => undefined);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      let data;
      try {
        if (code === 0) data = readFileSync(tmp);
      } catch {
        // not written
      }
      rmSync(tmp, { force: true });
      rmSync(work, { recursive: true, force: true });
      if (!data || data.length === 0)
        log(`fizz: no code cache for the node runtime (${signal ?? code}): ${stderr.trim()}`);
      resolve(data && data.length > 0 ? data : undefined);
    });
  });
}

const CACHE_INSTANCE = "fizz-code-cache";
const CACHE_SOURCE = 'module.exports = async (context) => ({ status: 200, body: "ok" });\n';

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/**
 * An empty-pool start's work: the specialize of a tiny function, then its first call.
 * @param {number} port
 * @param {string} token
 */
async function firstCall(port, token) {
  const body = JSON.stringify({
    instanceId: CACHE_INSTANCE,
    function: { namespace: "fizz", name: "code-cache", revision: 0 },
    filename: "code-cache.js",
    code: Buffer.from(CACHE_SOURCE).toString("base64"),
    digest: `sha256:${sha256(Buffer.from(CACHE_SOURCE))}`,
  });
  const json = { "content-type": "application/json" };
  await send(port, "POST", "/v2/specialize", { ...json, "x-fizz-specialize-token": token }, body);
  await send(port, "GET", "/", { "x-fizz-instance": CACHE_INSTANCE, "x-request-id": "r1" }, "");
}

/**
 * @param {number} port
 * @param {string} method
 * @param {string} path
 * @param {Record<string, string>} headers
 * @param {string} body
 * @returns {Promise<void>}
 */
function send(port, method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, headers, agent: false }, (res) => {
      res.resume();
      res.on("end", () =>
        res.statusCode === 200
          ? resolve()
          : reject(new Error(`${method} ${path}: ${res.statusCode}`)),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * Makes the cache for the bundle in place and rewrites the stamp with its hash (or without one).
 * @param {Stamp} stamp of the bundle in place
 * @param {(line: string) => void} log
 * @returns {Promise<Cache | undefined>}
 */
async function writeCache(stamp, log) {
  const data = await makeCache(stamp.bundle, log);
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
