// @ts-check
/**
 * Writes the pushed code into the work directory and loads it. Load failures become one line that
 * names the user's file and line (`hello.js:3: SyntaxError: Unexpected identifier 'x'`), because
 * that line is what the developer sees in `fizz fn logs` / the specialize error.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, extname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { compileFunction } from "node:vm";

/** A load failure caused by the user's code; its message is safe to show to the user. */
export class LoadError extends Error {}

/** @typedef {(context: object) => unknown} Handler */

// SyntaxErrors that CommonJS raises on ESM-only syntax; the same list Node's own module-format
// detection (--experimental-detect-module) retries as ESM.
const ESM_ONLY_SYNTAX = [
  "Cannot use import statement outside a module",
  "Unexpected token 'export'",
  "Cannot use 'import.meta' outside a module",
  "await is only valid in async functions and the top level bodies of modules",
];

/**
 * @param {{ dir: string, filename: string, code: Buffer, entrypoint: string | undefined }} spec
 * @returns {Promise<Handler>}
 */
export async function loadFunction({ dir, filename, code, entrypoint }) {
  const file = join(dir, filename);
  const ext = extname(filename);
  const format = ext === ".mjs" ? "module" : ext === ".cjs" ? "commonjs" : detectFormat(code, file);

  // Synchronous writes: a specialize comes before any traffic, and for a few small files a
  // thread-pool round trip per call (and starting the pool on its first use) costs more.
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (ext === ".js") {
    // Pin the module system of .js files in the workdir: the file keeps its name (so stack traces
    // name hello.js, not a renamed copy) and no package.json further up can change how it loads.
    writeFileSync(join(dir, "package.json"), JSON.stringify({ type: format }) + "\n");
  }
  writeFileSync(file, code, { mode: 0o600 });

  /** @type {unknown} */
  let mod;
  const savedLimit = Error.stackTraceLimit;
  // Deep enough to reach the user's frame under Node's loader frames.
  Error.stackTraceLimit = 50;
  try {
    mod = format === "module" ? await import(pathToFileURL(file).href) : createRequire(file)(file);
  } catch (err) {
    throw new LoadError(await describeLoadError(err, file, dir, code));
  } finally {
    Error.stackTraceLimit = savedLimit;
  }
  return resolveEntrypoint(mod, format, filename, entrypoint);
}

/**
 * CommonJS unless compiling as CommonJS fails on ESM-only syntax. Any other SyntaxError is left
 * for require() to report, with its line.
 * @param {Buffer} code
 * @param {string} file
 * @returns {"module" | "commonjs"}
 */
function detectFormat(code, file) {
  try {
    compileFunction(
      code.toString("utf8"),
      ["exports", "require", "module", "__filename", "__dirname"],
      {
        filename: file,
      },
    );
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
  const exports = /** @type {Record<string, unknown> | null | undefined} */ (mod);
  if (entrypoint === undefined) {
    // CommonJS: `module.exports = fn`, or `exports.default = fn` as emitted by TypeScript/Babel.
    const candidate =
      format === "module" ? exports?.default : typeof mod === "function" ? mod : exports?.default;
    if (typeof candidate === "function") return /** @type {Handler} */ (candidate);
    throw new LoadError(
      `${filename}: no default export function (use module.exports = fn or export default fn, or set an entrypoint)`,
    );
  }
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
  const fn = exports?.[name];
  if (typeof fn !== "function") {
    throw new LoadError(`${filename}: entrypoint "${entrypoint}" is not an exported function`);
  }
  return /** @type {Handler} */ (fn);
}

/**
 * `<file>:<line>: <Name>: <first line of the message>`, or without the line when it is unknown.
 * Absolute workdir paths are cut out of the message: they mean nothing to the user.
 * @param {unknown} err
 * @param {string} file
 * @param {string} dir
 * @param {Buffer} code
 * @returns {Promise<string>}
 */
async function describeLoadError(err, file, dir, code) {
  const name = basename(file);
  if (!(err instanceof Error)) return `${name}: uncaught ${String(err)}`;
  const message = (err.message.split("\n")[0] ?? "")
    .replaceAll(pathToFileURL(dir).href + "/", "")
    .replaceAll(dir + "/", "");
  const line =
    err.name === "SyntaxError"
      ? (syntaxErrorLine(err, file) ?? (await checkSyntaxLine(file)))
      : (frameLine(err, file) ?? specifierLine(err, code));
  return `${name}${line ? `:${line}` : ""}: ${err.name}: ${message}`;
}

/**
 * require() decorates a SyntaxError's stack with "<file>:<line>" as its first line.
 * @param {Error} err
 * @param {string} file
 */
function syntaxErrorLine(err, file) {
  const first = err.stack?.split("\n", 1)[0] ?? "";
  return first.startsWith(file + ":") ? first.slice(file.length + 1) : undefined;
}

/**
 * The first stack frame in the user's file: "(/dir/hello.js:3:7)" or "file:///dir/hello.mjs:3:7".
 * @param {Error} err
 * @param {string} file
 */
function frameLine(err, file) {
  for (const candidate of [file, pathToFileURL(file).href]) {
    const at = err.stack?.indexOf(candidate + ":") ?? -1;
    if (at < 0) continue;
    const match = /^:(\d+)/.exec(err.stack?.slice(at + candidate.length) ?? "");
    if (match) return match[1];
  }
  return undefined;
}

/**
 * ESM resolution errors ("Cannot find package 'x' imported from …") carry no frame; the line is
 * where the specifier is written.
 * @param {Error} err
 * @param {Buffer} code
 */
function specifierLine(err, code) {
  const match = /(?:package|module) '([^']+)'/.exec(err.message);
  if (!match) return undefined;
  const lines = code.toString("utf8").split("\n");
  const i = lines.findIndex((l) => l.includes(`'${match[1]}'`) || l.includes(`"${match[1]}"`));
  return i >= 0 ? String(i + 1) : undefined;
}

/**
 * Node 20 does not expose the location of a SyntaxError raised while compiling an ES module. Only
 * on that (rare) path, ask `node --check`, which prints "<file>:<line>" first.
 * @param {string} file
 * @returns {Promise<string | undefined>}
 */
async function checkSyntaxLine(file) {
  const { execFile } = await import("node:child_process");
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
