// @ts-check
/**
 * import() for the runtime's own code: an ES-module function, and node: built-ins loaded late.
 *
 * Started through start-cached.cjs, the one-file build runs from V8's code cache, and on Node 20 a
 * script that came out of a code cache has lost what its import() calls need (V8 does not restore
 * the host-defined options: "A dynamic import callback was not specified"). The loader passes its
 * own import() (compiled by Node, not from the cache) as `__fizzImport`, a parameter of the
 * function it wraps the bundle in; everywhere else (the sources, the bundle started by itself)
 * there is no such name and import() is the language's own. Only absolute specifiers come here
 * (file: URLs, node: built-ins): they resolve the same from any file.
 */

/**
 * @param {string} specifier a file: URL or a node: built-in
 * @returns {Promise<any>}
 */
export function dynamicImport(specifier) {
  // typeof of an undeclared name is "undefined", never a ReferenceError.
  // @ts-expect-error -- the loader's wrapper parameter, declared nowhere else
  if (typeof __fizzImport === "function") return __fizzImport(specifier);
  return import(specifier);
}
