// An esbuild plugin for the services' bundles: a module the services import statically, but that
// only some requests need, is loaded on its first call instead of at start-up. The source keeps
// its static import, so under tsx (tests, FIZZ_FROM_SOURCE=1) nothing changes; only the bundle
// gets, in its place, a small module of async functions that import() the real one (its own
// chunk) and call through.
//
// Why not `await import()` in the services' source: under tsx the services' static imports are
// one module instance and an import() another, so the lazily loaded code had its own
// @fizz/events and `err instanceof FizzError` failed on its errors (an unsafe archive answered
// 500 instead of 400). In the bundle, esbuild gives the chunk and the entry the same shared
// chunk of @fizz/events, so there is one FizzError.
import path from "node:path";
import { ROOT } from "./prereqs.mjs";

/**
 * Module -> the names the bundle may take lazily. Each must be an async function of that module
 * (a call already returns a promise, so waiting for the import first changes nothing for the
 * caller). A service importing any other name of the module fails the build ("No matching
 * export"), instead of getting something that would have to be there synchronously.
 * @type {Record<string, string[]>}
 */
export const LAZY_MODULES = {
  // tar, yauzl and zlib's streams: ~4 MB resident in the registry (first upload) and ~6 MB in
  // the poolkeeper (first build), which otherwise load them at start and never use them idle.
  "@fizz/kit/archive": ["canonicalize", "extractArchive", "packDirectory", "detectFormat"],
};

const NS = "fizz-lazy";

/**
 * The facade's source: one shared import() (retried after a failure, not cached as failed) and a
 * forwarding async function per name.
 * @param {string} spec
 * @param {string[]} names
 */
export function lazyFacade(spec, names) {
  const lines = [
    "let loading;",
    `const load = () => (loading ??= import(${JSON.stringify(spec)}).catch((err) => { loading = undefined; throw err; }));`,
  ];
  for (const n of names)
    lines.push(`export async function ${n}(...args) { return (await load()).${n}(...args); }`);
  return lines.join("\n") + "\n";
}

/** @type {import("esbuild").Plugin} */
export const lazyModules = {
  name: "fizz-lazy-modules",
  setup(build) {
    const specs = Object.keys(LAZY_MODULES);
    const filter = new RegExp(`^(${specs.map((s) => s.replace(/[/.]/g, "\\$&")).join("|")})$`);
    build.onResolve({ filter }, (args) =>
      // A static import becomes the facade; the facade's own import() (and any import() written
      // in the source) resolves normally, into a chunk.
      args.kind === "import-statement" ? { path: args.path, namespace: NS } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: NS }, (args) => ({
      contents: lazyFacade(args.path, LAZY_MODULES[args.path] ?? []),
      loader: "js",
      // The real module resolves from the services' tree, like the import it replaces.
      resolveDir: path.join(ROOT, "services"),
    }));
  },
};
