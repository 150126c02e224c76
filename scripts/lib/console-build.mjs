// Builds the web console (console/src, TypeScript and CSS) into console/dist with esbuild: one
// JS and one CSS file named by content hash (cached for good by the registry) and an index.html
// naming them. Used by the launcher (npm start, the e2e tests) and the registry image.
// esbuild is loaded only when a build is needed: an install without dev dependencies still
// launches, serving the console built before (or none).
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
import { ROOT } from "./prereqs.mjs";

export const CONSOLE_SRC = path.join(ROOT, "console", "src");
export const CONSOLE_DIST = path.join(ROOT, "console", "dist");

/**
 * Newest modification time under `dir` (ms).
 * @param {string} dir
 * @returns {number}
 */
function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * Builds into `outDir` (default console/dist). index.html is written last, by rename, so a
 * registry serving the directory never sees a page naming assets that are not there yet.
 * @param {string} [outDir]
 */
export async function buildConsole(outDir = CONSOLE_DIST) {
  const { build } = await import("esbuild");
  const assets = path.join(outDir, "assets");
  mkdirSync(assets, { recursive: true });
  const result = await build({
    entryPoints: [path.join(CONSOLE_SRC, "main.ts"), path.join(CONSOLE_SRC, "style.css")],
    outdir: assets,
    entryNames: "[name]-[hash]",
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2022",
    metafile: true,
    logLevel: "warning",
  });
  /** @type {Record<string, string>} */
  const names = {};
  for (const out of Object.keys(result.metafile.outputs)) {
    const base = path.basename(out);
    if (base.endsWith(".js")) names.js = base;
    if (base.endsWith(".css")) names.css = base;
  }
  if (!names.js || !names.css) throw new Error("esbuild made no console JS or CSS");
  const html = readFileSync(path.join(CONSOLE_SRC, "index.html"), "utf8")
    .replace("{{js}}", names.js)
    .replace("{{css}}", names.css);
  const tmp = path.join(outDir, `.index.html.${process.pid}`);
  writeFileSync(tmp, html);
  renameSync(tmp, path.join(outDir, "index.html"));
  // Assets of earlier builds: no page names them any more (a page loaded before this build has
  // its assets in the browser's cache, where hashed names are kept for good).
  for (const f of readdirSync(assets))
    if (f !== names.js && f !== names.css) rmSync(path.join(assets, f), { force: true });
  return outDir;
}

/**
 * Builds console/dist when it is missing or older than its sources; returns its path, or
 * undefined when there is no console to serve. Never throws: the console is not worth failing
 * `npm start` for. A build that fails (esbuild absent, a syntax error) leaves the last build
 * in place, served as it is, and says why through `warn`.
 * @param {{ dist?: string, warn?: (line: string) => void,
 *   build?: (outDir: string) => Promise<unknown> }} [opts]  dist: where (default console/dist);
 *   build: what builds (default buildConsole; tests stand in an esbuild that cannot load)
 * @returns {Promise<string | undefined>}
 */
export async function ensureConsoleBuilt(opts = {}) {
  const src = CONSOLE_SRC;
  const dist = opts.dist ?? CONSOLE_DIST;
  const warn = opts.warn ?? ((line) => console.error(`fizz: ${line}`));
  const page = path.join(dist, "index.html");
  let built = 0;
  try {
    built = statSync(page).mtimeMs;
  } catch {
    built = 0;
  }
  try {
    if (built > 0 && (!existsSync(src) || built >= newest(src))) return dist;
    await (opts.build ?? buildConsole)(dist);
    return dist;
  } catch (err) {
    const why = err instanceof Error ? err.message.split("\n")[0] : String(err);
    if (existsSync(page)) {
      warn(`web console not rebuilt (${why}); serving the previous build`);
      return dist;
    }
    warn(`web console not built (${why}); /console/ answers 404`);
    return undefined;
  }
}
