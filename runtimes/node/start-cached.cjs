// @ts-check
"use strict";
/**
 * Starts the one-file build (.build/server.cjs) with the V8 code cache prepare.mjs made for it
 * (.build/server.cjs.cache): the functions an empty-pool start runs (listen, specialize, the first
 * call) come out of the cache as bytecode instead of being parsed and compiled on that path.
 *
 * The process backend starts this file only when it has checked the cache as it checks the bundle
 * (host-prepare.ts: owned by the builder or root, writable by no one else, not a link, the bytes
 * its stamp names); otherwise it starts server.cjs itself. A cache V8 does not take (another Node
 * version, other flags, other source) is rejected by V8 and the script is compiled as usual.
 *
 * The bundle runs as Node would run it as a CommonJS main module: its own require (resolving from
 * .build, so the external `tar` is found as before), module, exports, __filename, __dirname. Its
 * import() calls (an ES-module function, node: built-ins loaded late) go through `__fizzImport`,
 * this file's own import(): on Node 20 a script that came out of a code cache lost what import()
 * needs (V8 does not restore the host-defined options), so the bundle's own would fail
 * (src/dynamic-import.mjs).
 *
 * `--write-cache=<file> --bundle-sha256=<hex>` (prepare.mjs only): no cache is read, and none is
 * made unless the bundle read is the one named; on SIGUSR2, sent once the instance
 * has answered its first call, the cache of everything compiled so far is written there and the
 * process exits. `--report-cache`: prints whether V8 took the cache (tests). `--check-cache`: prints
 * it and exits, 0 only when V8 took it, without running the bundle (the image's build checks the
 * cache it ships with the Node and flags its CMD runs).
 */
const { readFileSync, writeFileSync } = require("node:fs");
const { Module, createRequire } = require("node:module");
const { dirname, join } = require("node:path");
const vm = require("node:vm");

const file = join(__dirname, ".build", "server.cjs");
const args = process.argv.slice(2);
const writeTo = args.find((a) => a.startsWith("--write-cache="))?.slice("--write-cache=".length);

const bytes = readFileSync(file);
// Making a cache: only for the bundle prepare.mjs stamped. V8 takes a cache for any source of the
// same length, so one made from another build renamed in meanwhile would run that build's
// bytecode under the stamped one's name (review RV2). node:crypto only here, never in instances.
const forBundle = args
  .find((a) => a.startsWith("--bundle-sha256="))
  ?.slice("--bundle-sha256=".length);
if (writeTo !== undefined) {
  const found = require("node:crypto").createHash("sha256").update(bytes).digest("hex");
  if (found !== forBundle) {
    process.stderr.write(`[fizz] ${file} is not the bundle to make a cache for\n`);
    process.exit(1);
  }
}
// The #! line (a syntax error inside a function) blanked, not removed: line numbers stay right.
const source = bytes.toString("utf8").replace(/^#!.*/, "");
/** @type {Buffer | undefined} */
let cachedData;
if (writeTo === undefined) {
  try {
    cachedData = readFileSync(`${file}.cache`);
  } catch {
    // No cache: compiled as usual.
  }
}
// The same wrapper text when the cache is made and when it is used: V8 checks the source.
const script = new vm.Script(
  `(function (exports, require, module, __filename, __dirname, __fizzImport) {${source}\n})`,
  { filename: file, cachedData },
);
const taken = !cachedData ? "none" : script.cachedDataRejected ? "rejected" : "accepted";
if (args.includes("--report-cache") || args.includes("--check-cache"))
  process.stderr.write(`[fizz] code cache ${taken}\n`);
if (args.includes("--check-cache")) process.exit(taken === "accepted" ? 0 : 1);
if (writeTo !== undefined)
  process.on("SIGUSR2", () => {
    writeFileSync(writeTo, script.createCachedData(), { mode: 0o600 });
    process.exit(0);
  });

const main = new Module(file, module);
main.filename = file;
main.loaded = true;
/** @type {Function} */ (script.runInThisContext()).call(
  main.exports,
  main.exports,
  createRequire(file),
  main,
  file,
  dirname(file),
  /** @param {string} specifier an absolute one: resolved the same from here */
  (specifier) => import(specifier),
);
