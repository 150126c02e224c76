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
import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./prereqs.mjs";

/**
 * Module -> the names the bundle may take lazily. Each must be an async function of that module
 * (a call already returns a promise, so waiting for the import first changes nothing for the
 * caller). Any other use of the module fails the build (see unsupportedImports), instead of getting
 * something undefined, or a name that would have to be there synchronously.
 * @type {Record<string, string[]>}
 */
export const LAZY_MODULES = {
  // tar, yauzl and zlib's streams, which the registry (first upload) and the poolkeeper (first
  // build) otherwise load at start and never use idle: idle RSS measured 0.6-0.8 MB lower in the
  // registry, 0.7-2.7 MB in the poolkeeper (H6's A/Bs).
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

/**
 * Why `source` (a file importing `spec`) cannot have the facade in its place, or undefined. Only
 * `import { listed names } from spec` (type-only names and `import type` are erased) is taken:
 * esbuild refuses a named import of a name the facade lacks, but builds a namespace import with a
 * warning (the name is undefined at run time) and a re-export silently (a ReferenceError at run
 * time). So every `from spec`, and a side-effect `import spec`, must be that one form.
 * @param {string} source
 * @param {string} spec
 * @param {string[]} names
 */
export function unsupportedImports(source, spec, names) {
  const quoted = spec.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
  for (const m of source.matchAll(new RegExp(`(["'])${quoted}\\1`, "g"))) {
    const before = source.slice(Math.max(0, (m.index ?? 0) - 4000), m.index);
    if (/\bimport\s*\(\s*$/.test(before)) continue; // import(): resolved normally, a chunk
    const named = /\bimport\s+(type\s+)?\{([^}]*)\}\s*from\s*$/.exec(before);
    if (named?.[1] || /\bexport\s+type\s*\{[^}]*\}\s*from\s*$/.test(before)) continue;
    if (named) {
      const taken = (named[2] ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "" && !/^type\s/.test(s))
        .map((s) => s.split(/\s+as\s+/)[0]);
      const other = taken.filter((n) => n === undefined || !names.includes(n));
      if (other.length === 0) continue;
      return `${other.join(", ")} of ${spec} cannot be loaded lazily (only ${names.join(", ")})`;
    }
    if (/(\bfrom|\bimport)\s*$/.test(before))
      return `only \`import { ${names.join(", ")} } from "${spec}"\` can be loaded lazily: not a namespace import, a re-export or an import for its effects`;
  }
  return undefined;
}

/** @type {import("esbuild").Plugin} */
export const lazyModules = {
  name: "fizz-lazy-modules",
  setup(build) {
    const specs = Object.keys(LAZY_MODULES);
    const filter = new RegExp(`^(${specs.map((s) => s.replace(/[/.]/g, "\\$&")).join("|")})$`);
    build.onResolve({ filter }, (args) => {
      // A static import becomes the facade; the facade's own import() (and any import() written
      // in the source) resolves normally, into a chunk.
      if (args.kind !== "import-statement") return undefined;
      // The importer's text: its file, or the build's stdin (named after its sourcefile).
      const stdin = build.initialOptions.stdin;
      const isStdin =
        stdin !== undefined &&
        (args.importer === "<stdin>" ||
          args.importer === path.resolve(stdin.resolveDir ?? "", stdin.sourcefile ?? "<stdin>"));
      const source = isStdin ? stdin.contents : readFileSync(args.importer);
      const why = unsupportedImports(String(source), args.path, LAZY_MODULES[args.path] ?? []);
      if (why !== undefined) return { errors: [{ text: `${args.importer}: ${why}` }] };
      return { path: args.path, namespace: NS };
    });
    build.onLoad({ filter: /.*/, namespace: NS }, (args) => ({
      contents: lazyFacade(args.path, LAZY_MODULES[args.path] ?? []),
      loader: "js",
      // The real module resolves from the services' tree, like the import it replaces.
      resolveDir: path.join(ROOT, "services"),
    }));
  },
};
