// @ts-check
/**
 * Loads a package (the archive form of specialize) from its extracted directory
 * (docs/runtime-contract.md, "Entry points"):
 * - `file.fn` (or `dir/file.fn`): the export `fn` of `<dir>/file.js`, `.mjs` or `.cjs`;
 * - `fn`: the export `fn` of the package's main;
 * - none: the package main's default export / module.exports.
 * The main is package.json's "main", else index.js (index.mjs, index.cjs). Dependencies resolve
 * from `<dir>/node_modules` as Node resolves them.
 */
import { existsSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, extname, join, relative, sep } from "node:path";
import { LoadError, detectFormat, importFile, pickExport } from "./loader.mjs";

/** @typedef {import("./loader.mjs").Handler} Handler */

const EXTENSIONS = [".js", ".mjs", ".cjs"];

/**
 * @param {{ dir: string, entrypoint: string | undefined }} spec
 * @returns {Promise<Handler>}
 */
export async function loadPackage({ dir: given, entrypoint }) {
  // Node names modules by their real path: compare like with like.
  const dir = realpathSync(given);
  const dot = entrypoint?.lastIndexOf(".") ?? -1;
  const file =
    entrypoint && dot >= 0 ? entryFile(dir, entrypoint.slice(0, dot), entrypoint) : main(dir);
  const name = entrypoint === undefined ? undefined : entrypoint.slice(dot + 1);
  const format = formatOf(file, dir);
  if (!existsSync(join(dir, "package.json"))) {
    // Without a package.json of its own, Node would take the module system of the package's .js
    // files from whatever package.json is above the work dir: pin it next to the package, as the
    // entry file's.
    const boundary = join(dirname(dir), "package.json");
    writeFileSync(boundary, JSON.stringify({ type: format }) + "\n");
  }
  const mod = await importFile(file, format, dir);
  return pickExport(mod, format, relative(dir, file), name, entrypoint);
}

/**
 * @param {string} dir
 * @param {string} base the entrypoint's file part, as written (`app`, `lib/app`, `app.js`)
 * @param {string} entrypoint
 */
function entryFile(dir, base, entrypoint) {
  const candidates = EXTENSIONS.includes(extname(base))
    ? [base]
    : EXTENSIONS.map((ext) => base + ext);
  for (const candidate of candidates) {
    const file = join(dir, candidate);
    if (existsSync(file)) return file;
  }
  const tried = candidates.join(", ");
  throw new LoadError(`entrypoint "${entrypoint}": the package has no ${tried}`);
}

/**
 * package.json "main" (resolved as require() resolves a directory), else index.mjs or index.cjs.
 * @param {string} dir
 */
function main(dir) {
  let resolved;
  try {
    resolved = createRequire(join(dir, "package.json")).resolve("./");
  } catch {
    for (const name of ["index.mjs", "index.cjs"]) {
      if (existsSync(join(dir, name))) return join(dir, name);
    }
  }
  if (resolved === undefined) {
    throw new LoadError(
      `the package has no main: set an entrypoint ("file.fn"), package.json "main", or add index.js`,
    );
  }
  if (!resolved.startsWith(dir + sep)) {
    throw new LoadError(`package.json: "main" must name a file inside the package`);
  }
  return resolved;
}

/**
 * By extension; a .js file by the "type" of the nearest package.json inside the package, and
 * without one by its syntax (as a single file is).
 * @param {string} file
 * @param {string} dir
 * @returns {"module" | "commonjs"}
 */
function formatOf(file, dir) {
  const ext = extname(file);
  if (ext === ".mjs") return "module";
  if (ext !== ".js") return "commonjs";
  for (let at = dirname(file); at === dir || at.startsWith(dir + sep); at = dirname(at)) {
    const type = packageType(join(at, "package.json"), dir);
    if (type === "module" || type === "commonjs") return type;
    if (type !== null) break; // a package.json without "type": Node's default applies
    if (at === dir) break;
  }
  return detectFormat(readFileSync(file), file);
}

/**
 * @param {string} path
 * @param {string} dir
 * @returns {unknown} the "type" field; null when there is no such file
 */
function packageType(path, dir) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return null;
  }
  try {
    const value = /** @type {unknown} */ (JSON.parse(text));
    return typeof value === "object" && value !== null && "type" in value ? value.type : undefined;
  } catch {
    throw new LoadError(`${relative(dir, path)}: not valid JSON`);
  }
}
