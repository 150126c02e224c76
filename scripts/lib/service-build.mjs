// Bundles the five services with esbuild into dist/: one entry per service (dist/<service>.mjs)
// and the code they share, or load only on demand (the OpenTelemetry SDK, @kubernetes/client-node
// behind the poolkeeper's Kubernetes backend), in content-named chunks (dist/chunks/). A service
// then loads one pre-compiled file set instead of tsx compiling hundreds of modules in a loader
// thread: about half the memory, and no tsx at run time. Used by the launcher (npm start, the
// e2e, security and fault suites, the bench: rebuilt when a source changed) and the images.
// esbuild is loaded only when a build is needed.
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { lazyModules } from "./lazy-modules.mjs";
import { ROOT } from "./prereqs.mjs";

export const SERVICE_NAMES = ["registry", "scheduler", "poolkeeper", "gateway", "kubewatcher"];
export const SERVICE_DIST = path.join(ROOT, "dist");

/**
 * How much bytecode a function runs before V8 optimizes it with TurboFan, for the poolkeeper: 16x
 * V8's default (67584). Filling a pool (16 instances in 3 s) made 21 functions hot enough for
 * TurboFan (node's readFile and Buffer internals, the NATS client's message parsing, killUid), the
 * only service that compiled anything at idle, and running TurboFan faults in ~3.5 MB of the node
 * binary's compiler code that then stays resident: idle RSS 61.0-62.8 MB against 55-56 for the
 * others. At 16x a pool fill no longer reaches it (idle 56.6-56.9 MB; 4x: 59.0), while code that
 * stays hot (sustained traffic) is still optimized, only later. `--max-opt=1` (no TurboFan at
 * all) saved the same and was not taken: it would never optimize the cold-start path.
 */
export const POOLKEEPER_INTERRUPT_BUDGET = 16 * 67584;

/**
 * The gateway's young generation cap, in MB per semi-space. Left to V8, it grows with the request
 * rate up to 16 MB per semi-space (32 MB of new space, kept committed): RSS under the warm load
 * 95.7 MB in the bench, 97-101 MB peak in A/B runs at 3-6k req/s. At 4 MB: 76-80 MB peak. The
 * proxy's per-request garbage dies young whatever the size, so the cost is only more scavenges
 * (about 2x per request, each cheaper): 10 alternating rounds on the shared machine showed no
 * loss in req/s or gateway CPU per request (paired median -7%, noise +-10%), and the scavenges'
 * uncontended pauses estimate ~1% more CPU. 6 and 8 MB still peaked at 86-89 MB (at most 90 is the
 * target), 2 MB saved ~3 MB more for ~10% more CPU per request. Swept again (4, 8, 16 MB,
 * uncapped; 3 rotated rounds, a platform each): peak under load 76-79 / 83-87 / 81-89 / 82-100 MB
 * at only 1.5-4.8k req/s on a loaded machine (the young generation grows with the rate), req/s and
 * CPU per request inside the noise. Only 4 keeps a margin under 90 (<= 85).
 */
export const GATEWAY_SEMI_SPACE_MB = 4;

/**
 * Node flags each bundled service runs with (the launcher; the image writes them to node-flags).
 * --max-semi-space-size=1: V8's young generation grows to 16 MB per semi-space after a burst of
 * allocation (start-up) and stays committed while the service idles; at 1 MB it is collected more
 * often, each time cheaply, for 10 to 15 MB less resident memory. Correctness does not depend on
 * it (old space is not capped). The gateway, whose proxy allocates per request, gets
 * GATEWAY_SEMI_SPACE_MB: see there.
 * --expose-gc: for kit's settleMemoryAfterStart (a few incremental collections after start-up).
 * --interrupt-budget (the poolkeeper, POOLKEEPER_INTERRUPT_BUDGET): see there.
 * @type {Record<string, string[]>}
 */
export const SERVICE_NODE_FLAGS = {
  registry: ["--max-semi-space-size=1", "--expose-gc"],
  scheduler: ["--max-semi-space-size=1", "--expose-gc"],
  poolkeeper: [
    "--max-semi-space-size=1",
    "--expose-gc",
    `--interrupt-budget=${POOLKEEPER_INTERRUPT_BUDGET}`,
  ],
  kubewatcher: ["--max-semi-space-size=1", "--expose-gc"],
  gateway: [`--max-semi-space-size=${GATEWAY_SEMI_SPACE_MB}`, "--expose-gc"],
};
const STAMP = ".services-build.json";
// A chunk no current entry names is kept this long: a service started from the build before may
// still import it on demand (a Kubernetes backend, tracing switched on).
const OLD_CHUNK_MS = 24 * 60 * 60 * 1000;
/** Not esbuild's inputs, but a build depends on them: what is installed, and how it is built. */
const ALSO_DEPENDS_ON = [
  "package-lock.json",
  "node_modules/.package-lock.json",
  path.relative(ROOT, fileURLToPath(import.meta.url)),
  path.relative(ROOT, fileURLToPath(new URL("./lazy-modules.mjs", import.meta.url))),
];

/**
 * Marks the shared libraries' own modules side-effect free (as `"sideEffects": false` would in
 * their package.json), so a module none of whose exports a service uses is left out, with what it
 * imports: the scheduler does not load undici because @fizz/kit's index also exports the outbound
 * guard. Their modules only declare things at the top level; none is imported for an effect.
 * @type {import("esbuild").Plugin}
 */
const sharedWithoutSideEffects = {
  name: "fizz-shared-side-effect-free",
  setup(build) {
    const shared = path.join(ROOT, "shared") + path.sep;
    build.onResolve({ filter: /^(\.|@fizz\/)/ }, async (args) => {
      if (args.pluginData?.fizzResolving || args.kind === "entry-point") return undefined;
      const r = await build.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: { fizzResolving: true },
      });
      if (r.errors.length > 0 || !r.path.startsWith(shared)) return undefined;
      return { path: r.path, sideEffects: false };
    });
  },
};

const UNDICI_CORE = fileURLToPath(new URL("./undici-core.mjs", import.meta.url));

/**
 * Our own code's `import … from "undici"` gets undici-core.mjs: undici's dispatchers without the
 * fetch, WebSocket, cache and mock modules its index loads (about 7 MB resident in the gateway and
 * the poolkeeper, which never use them). Imports from inside node_modules (undici itself, other
 * packages) get the real entry.
 * @type {import("esbuild").Plugin}
 */
const undiciDispatchersOnly = {
  name: "fizz-undici-dispatchers-only",
  setup(build) {
    build.onResolve({ filter: /^undici$/ }, (args) =>
      args.importer.includes(`${path.sep}node_modules${path.sep}`)
        ? undefined
        : { path: UNDICI_CORE },
    );
  },
};

/**
 * The bundle file of a service.
 * @param {string} svc
 * @param {string} [dist]
 */
export function serviceBundle(svc, dist = SERVICE_DIST) {
  return path.join(dist, `${svc}.mjs`);
}

/**
 * Writes `data` to `file` through a temporary file and a rename, so a process reading it (or
 * another build writing it at the same time) only ever sees a whole file.
 * @param {string} file
 * @param {Uint8Array | string} data
 */
function writeAtomically(file, data) {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

/**
 * Builds every service into `dist`. Chunks and source maps are written before the entries that
 * name them, and the stamp last, so a concurrent launcher never starts a half-written build.
 * @param {{ dist?: string, minify?: boolean }} [opts]
 * @returns {Promise<string[]>} the entry files
 */
export async function buildServices(opts = {}) {
  const dist = opts.dist ?? SERVICE_DIST;
  const { build } = await import("esbuild");
  const startedAt = Date.now();
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: Object.fromEntries(
      SERVICE_NAMES.map((s) => [s, path.join(ROOT, "services", s, "src", "main.ts")]),
    ),
    outdir: dist,
    outExtension: { ".js": ".mjs" },
    entryNames: "[name]",
    chunkNames: "chunks/[name]-[hash]",
    bundle: true,
    splitting: true,
    platform: "node",
    target: "node20",
    format: "esm",
    // Whitespace and syntax only: the source V8 holds for every loaded file is about half as big,
    // and function names stay as written, so a stack trace still reads without a source map.
    minifyWhitespace: opts.minify ?? true,
    minifySyntax: opts.minify ?? true,
    legalComments: "none",
    // For `FIZZ_SOURCE_MAPS=1` (node --enable-source-maps); not read otherwise.
    sourcemap: "linked",
    write: false,
    metafile: true,
    // Some dependencies still call require(); give every ESM file one.
    banner: {
      js: "import { createRequire as __fizzRequire } from 'node:module'; const require = __fizzRequire(import.meta.url);",
    },
    // The order does not keep the facade: sharedWithoutSideEffects' build.resolve() goes through
    // lazyModules too, and leaves the facade (not a file under shared/) to it.
    plugins: [lazyModules, sharedWithoutSideEffects, undiciDispatchersOnly],
    logLevel: "warning",
  });
  const outputs = result.outputFiles;
  const isEntry = (/** @type {string} */ p) => path.dirname(p) === path.resolve(dist);
  const order = (/** @type {string} */ p) => (p.endsWith(".map") ? 0 : isEntry(p) ? 2 : 1);
  for (const f of [...outputs].sort((a, b) => order(a.path) - order(b.path)))
    writeAtomically(f.path, f.contents);
  // Files only: `<define:…>` and the like are esbuild's own, `fizz-lazy:…` a plugin's module
  // (lazy-modules.mjs, in ALSO_DEPENDS_ON); listed, staleness() found them gone and every
  // launcher rebuilt.
  const files = Object.keys(result.metafile.inputs).filter(
    (f) => !f.startsWith("<") && !/^[a-z][\w-]*:/.test(f),
  );
  const inputs = [...files, ...ALSO_DEPENDS_ON];
  writeAtomically(path.join(dist, STAMP), JSON.stringify({ startedAt, inputs }));
  removeOldChunks(dist, new Set(outputs.map((f) => f.path)));
  return SERVICE_NAMES.map((s) => serviceBundle(s, dist));
}

/**
 * @param {string} dist
 * @param {Set<string>} current
 */
function removeOldChunks(dist, current) {
  const dir = path.join(dist, "chunks");
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    try {
      if (!current.has(file) && Date.now() - statSync(file).mtimeMs > OLD_CHUNK_MS)
        rmSync(file, { force: true });
    } catch {
      // Another build removed it first.
    }
  }
}

/**
 * Why the build in `dist` cannot be used as it is, or undefined when it is up to date: every
 * entry is there and no input (source, installed package, this builder) changed since it began.
 * @param {string} dist
 * @returns {string | undefined}
 */
export function staleness(dist = SERVICE_DIST) {
  /** @type {{ startedAt: number, inputs: string[] }} */
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(path.join(dist, STAMP), "utf8"));
  } catch {
    return "not built yet";
  }
  for (const svc of SERVICE_NAMES)
    if (!existsSync(serviceBundle(svc, dist))) return `${svc} not built yet`;
  for (const input of stamp.inputs) {
    let mtime;
    try {
      mtime = statSync(path.join(ROOT, input)).mtimeMs;
    } catch {
      // Gone (a file deleted or renamed): what imported it changed too, or the build would fail.
      return `${input} is gone`;
    }
    if (mtime > stamp.startedAt) return `${input} changed`;
  }
  return undefined;
}

/**
 * Rebuilds dist/ when it is missing or older than its sources; returns the entries' directory.
 * A failed build throws: a service must never run code older than its sources without saying so.
 * @param {{ dist?: string, log?: (line: string) => void }} [opts]
 * @returns {Promise<string>}
 */
export async function ensureServicesBuilt(opts = {}) {
  const dist = opts.dist ?? SERVICE_DIST;
  const why = staleness(dist);
  if (why === undefined) return dist;
  const t = Date.now();
  try {
    await buildServices({ dist });
  } catch (err) {
    const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw new Error(
      `could not bundle the services (${msg}); FIZZ_FROM_SOURCE=1 runs them from their sources`,
      { cause: err },
    );
  }
  opts.log?.(
    `services bundled into ${path.relative(ROOT, dist)}/ in ${Date.now() - t} ms (${why})`,
  );
  return dist;
}
