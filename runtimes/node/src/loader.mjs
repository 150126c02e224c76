// @ts-check
/**
 * Writes the pushed code into the work directory and loads it. Load failures become one line that
 * names the user's file and line (`hello.js:3: SyntaxError: Unexpected identifier 'x'`), because
 * that line is what the developer sees in `fizz fn logs` / the specialize error. Packages (the
 * archive form) are loaded by package-loader.mjs with the helpers exported here.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, extname, join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { compileFunction } from "node:vm";
import { dynamicImport } from "./dynamic-import.mjs";

/** A load failure caused by the user's code; its message is safe to show to the user. */
export class LoadError extends Error {}

/** @typedef {(context: object, callback?: (status?: number, body?: unknown, headers?: Record<string, string>) => void) => unknown} Handler */

// SyntaxErrors that CommonJS raises on ESM-only syntax; the same list Node's own module-format
// detection (--experimental-detect-module) retries as ESM.
const ESM_ONLY_SYNTAX = [
  "Cannot use import statement outside a module",
  "Unexpected token 'export'",
  "Cannot use 'import.meta' outside a module",
  "await is only valid in async functions and the top level bodies of modules",
];

/**
 * The single-file form: writes the code into `dir` and loads it. `dir` exists: the specialize made
 * it (workdirOf) before calling this, so it is not made again here.
 * @param {{ dir: string, filename: string, code: Buffer, entrypoint: string | undefined }} spec
 * @returns {Promise<Handler>}
 */
export async function loadFunction({ dir, filename, code, entrypoint }) {
  const file = join(dir, filename);
  const ext = extname(filename);
  const format = ext === ".mjs" ? "module" : ext === ".cjs" ? "commonjs" : detectFormat(code, file);

  // Synchronous writes: a specialize comes before any traffic, and for a few small files a
  // thread-pool round trip per call (and starting the pool on its first use) costs more.
  if (ext === ".js") {
    // Pin the module system of .js files in the workdir: the file keeps its name (so stack traces
    // name hello.js, not a renamed copy) and no package.json further up can change how it loads.
    writeFileSync(join(dir, "package.json"), JSON.stringify({ type: format }) + "\n");
  }
  writeFileSync(file, code, { mode: 0o600 });

  const mod = await importFile(file, format, dir);
  return resolveEntrypoint(mod, format, filename, entrypoint);
}

/**
 * Loads one of the user's files; a failure becomes a LoadError naming the user's file (relative
 * to `dir`) and line.
 * @param {string} file
 * @param {"module" | "commonjs"} format
 * @param {string} dir
 * @returns {Promise<unknown>} module.exports or the ESM namespace
 */
export async function importFile(file, format, dir) {
  const savedLimit = Error.stackTraceLimit;
  // Deep enough to reach the user's frame under Node's loader frames.
  Error.stackTraceLimit = 50;
  try {
    return format === "module"
      ? await dynamicImport(pathToFileURL(file).href)
      : createRequire(file)(file);
  } catch (err) {
    throw new LoadError(await describeLoadError(err, file, dir));
  } finally {
    Error.stackTraceLimit = savedLimit;
  }
}

// Every message in ESM_ONLY_SYNTAX needs one of these keywords as a token of its own; followed by
// an identifier character it is part of a longer name (`module.exports`, `imports`, `awaited`).
// Or an escape (\u): `aw\u0061it x` is an identifier in a script, and fails the compile with the
// await message just the same (the ES module path then reports the escaped keyword).
const ESM_KEYWORD = /(?:import|export|await)(?![A-Za-z0-9_$])|\\u/;

/**
 * Whether `source` may be an ES module: false only when no ESM-only syntax can be in it, because
 * none of its keywords is, nor any escape that could spell one. A keyword (or an escape) in a
 * comment or string still says true: the compile decides.
 * @param {string} source
 */
export function mayBeModule(source) {
  return ESM_KEYWORD.test(source);
}

/**
 * CommonJS unless compiling as CommonJS fails on ESM-only syntax. Any other SyntaxError is left
 * for require() to report, with its line. Source without an ESM keyword is CommonJS without that
 * compile: require() compiles it anyway, and the first compile was ~0.2-0.3 ms of a specialize.
 * @param {Buffer} code
 * @param {string} file
 * @returns {"module" | "commonjs"}
 */
export function detectFormat(code, file) {
  const source = code.toString("utf8");
  if (!mayBeModule(source)) return "commonjs";
  try {
    compileFunction(source, ["exports", "require", "module", "__filename", "__dirname"], {
      filename: file,
    });
    return "commonjs";
  } catch (err) {
    const message = err instanceof Error ? err.message : "";
    return ESM_ONLY_SYNTAX.includes(message) ? "module" : "commonjs";
  }
}

/**
 * @param {unknown} mod module.exports or the ESM namespace
 * @param {"module" | "commonjs"} format
 * @param {string} filename
 * @param {string | undefined} entrypoint
 * @returns {Handler}
 */
function resolveEntrypoint(mod, format, filename, entrypoint) {
  if (entrypoint === undefined) return pickExport(mod, format, filename, undefined, undefined);
  let name = entrypoint;
  const dot = entrypoint.lastIndexOf(".");
  if (dot >= 0) {
    const file = entrypoint.slice(0, dot);
    name = entrypoint.slice(dot + 1);
    if (file !== filename && file !== basename(filename, extname(filename))) {
      throw new LoadError(
        `${filename}: entrypoint "${entrypoint}" names "${file}", but the code is ${filename}`,
      );
    }
  }
  return pickExport(mod, format, filename, name, entrypoint);
}

/**
 * The function a loaded module offers: the export `name`, or with none the default export.
 * @param {unknown} mod module.exports or the ESM namespace
 * @param {"module" | "commonjs"} format
 * @param {string} filename the user's file, for the message
 * @param {string | undefined} name
 * @param {string | undefined} entrypoint as the user wrote it, for the message
 * @returns {Handler}
 */
export function pickExport(mod, format, filename, name, entrypoint) {
  const exports = /** @type {Record<string, unknown> | null | undefined} */ (mod);
  if (name === undefined) {
    // CommonJS: `module.exports = fn`, or `exports.default = fn` as emitted by TypeScript/Babel.
    const candidate =
      format === "module" ? exports?.default : typeof mod === "function" ? mod : exports?.default;
    if (typeof candidate === "function") return /** @type {Handler} */ (candidate);
    throw new LoadError(
      `${filename}: no default export function (use module.exports = fn or export default fn, or set an entrypoint)`,
    );
  }
  const fn = exports?.[name];
  if (typeof fn !== "function") {
    throw new LoadError(`${filename}: entrypoint "${entrypoint}" is not an exported function`);
  }
  return /** @type {Handler} */ (fn);
}

/**
 * `<file>:<line>: <Name>: <first line of the message>`, or without the line when it is unknown.
 * `<file>` is the user's file where it went wrong (relative to `dir`: a package's `lib/db.js`),
 * else the file being loaded. Absolute paths are cut out of the message: they mean nothing to
 * the user.
 * @param {unknown} err
 * @param {string} file the file being loaded
 * @param {string} dir the user's code's root
 * @returns {Promise<string>}
 */
async function describeLoadError(err, file, dir) {
  if (!(err instanceof Error)) return `${relative(dir, file)}: uncaught ${String(err)}`;
  const dirUrl = pathToFileURL(dir).href;
  const message = (err.message.split("\n")[0] ?? "")
    .replaceAll(dirUrl + "/", "")
    .replaceAll(dir + "/", "");
  /** @type {{ file: string, line: string | undefined } | undefined} */
  let at;
  if (err.name === "SyntaxError") {
    at = syntaxErrorLocation(err, dir);
    if (!at) at = { file, line: await checkSyntaxLine(file) };
  } else {
    at = frameLocation(err, dir, dirUrl) ?? specifierLocation(err, file);
  }
  const where = relative(dir, at?.file ?? file);
  return `${where}${at?.line ? `:${at.line}` : ""}: ${err.name}: ${message}`;
}

/**
 * require() decorates a SyntaxError's stack with "<file>:<line>" as its first line.
 * @param {Error} err
 * @param {string} dir
 */
function syntaxErrorLocation(err, dir) {
  const first = err.stack?.split("\n", 1)[0] ?? "";
  const match = /^(.*):(\d+)$/.exec(first);
  if (!match?.[1] || !match[1].startsWith(dir + "/")) return undefined;
  return { file: match[1], line: match[2] };
}

/**
 * The innermost stack frame in the user's code: "(/dir/lib/db.js:3:7)" or
 * "file:///dir/hello.mjs:3:7". A path without a line ("Require stack: - /dir/hello.js") is not one.
 * @param {Error} err
 * @param {string} dir
 * @param {string} dirUrl
 */
function frameLocation(err, dir, dirUrl) {
  const frame = new RegExp(`(${escapeRegExp(dirUrl)}|${escapeRegExp(dir)})(/[^\\s()]+?):(\\d+)`);
  const match = frame.exec(err.stack ?? "");
  if (!match?.[2] || !match[3]) return undefined;
  const path = match[1] === dirUrl ? decodeURIComponent(match[2]) : match[2];
  return { file: dir + path, line: match[3] };
}

/** @param {string} s */
function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * ESM resolution errors ("Cannot find package 'x' imported from /dir/a.mjs") carry no frame; the
 * line is where the specifier is written in the importing file.
 * @param {Error} err
 * @param {string} file the file being loaded, when the message names no importer
 */
function specifierLocation(err, file) {
  const match = /(?:package|module) '([^']+)'/.exec(err.message);
  if (!match) return undefined;
  const importer = / imported from (\S+)/.exec(err.message)?.[1] ?? file;
  let lines;
  try {
    lines = readFileSync(importer, "utf8").split("\n");
  } catch {
    return undefined;
  }
  const i = lines.findIndex((l) => l.includes(`'${match[1]}'`) || l.includes(`"${match[1]}"`));
  return { file: importer, line: i >= 0 ? String(i + 1) : undefined };
}

/**
 * Node 20 does not expose the location of a SyntaxError raised while compiling an ES module. Only
 * on that (rare) path, ask `node --check`, which prints "<file>:<line>" first. It checks the file
 * being loaded; an error in a module that file imports is reported without its line.
 * @param {string} file
 * @returns {Promise<string | undefined>}
 */
async function checkSyntaxLine(file) {
  /** @type {typeof import("node:child_process")} */
  const { execFile } = await dynamicImport("node:child_process");
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--check", file],
      { timeout: 10_000 },
      (_error, _stdout, stderr) => {
        const first = String(stderr).split("\n", 1)[0] ?? "";
        const match = /:(\d+)$/.exec(first);
        resolve(match && first.startsWith(file) ? match[1] : undefined);
      },
    );
  });
}
