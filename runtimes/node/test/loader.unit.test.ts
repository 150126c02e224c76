// The single-file form's module system (src/loader.mjs): a .js file is CommonJS unless compiling
// it as CommonJS fails on ESM-only syntax. mayBeModule skips that compile for source without an
// ESM keyword; it must never skip it for source that is an ES module.
import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compileFunction } from "node:vm";
import { detectFormat, loadFunction, mayBeModule } from "../src/loader.mjs";
import { SOURCE as REHEARSAL_SOURCE } from "../src/rehearse.mjs";

// What detectFormat answered before the pre-check: the compile alone.
const ESM_ONLY = [
  "Cannot use import statement outside a module",
  "Unexpected token 'export'",
  "Cannot use 'import.meta' outside a module",
  "await is only valid in async functions and the top level bodies of modules",
];
function byCompile(source: string): "module" | "commonjs" {
  try {
    compileFunction(source, ["exports", "require", "module", "__filename", "__dirname"]);
    return "commonjs";
  } catch (err) {
    return ESM_ONLY.includes((err as Error).message) ? "module" : "commonjs";
  }
}

const MODULES = [
  "export default () => 1;",
  "import x from 'y';\nmodule.exports = x;",
  "import{x}from'y';",
  "const u = import.meta.url;",
  "const v = await Promise.resolve(1);",
  "exports.a = 1;\nexport const b = 2;",
  "/* exports */ export\ndefault 1;",
  "const awaited = 1; await awaited;",
];
const COMMONJS = [
  "module.exports = async (context) => ({ status: 200, body: 'hi' });",
  "exports.handler = () => 'x';",
  "// import { x } from 'y'\nmodule.exports = () => 1;",
  "module.exports = async () => { await Promise.resolve(); return 1; };",
  "const importer = require('./importer'); module.exports = importer.exports;",
  "module.exports = () => 1;\nlet x y = 2;", // a syntax error, not ESM-only: require() reports it
  "\\u0069mport x from 'y';", // an escaped keyword is an error of its own
];

describe("node runtime: loader.mjs module system of a .js file", () => {
  it("answers exactly as the compile does, for ES modules and CommonJS alike", () => {
    for (const source of [...MODULES, ...COMMONJS]) {
      expect(detectFormat(Buffer.from(source), "/x/hello.js"), source).to.equal(byCompile(source));
    }
    for (const source of MODULES) expect(byCompile(source), source).to.equal("module");
  });

  it("never skips the compile for an ES module", () => {
    for (const source of MODULES) expect(mayBeModule(source), source).to.equal(true);
  });

  it("skips it for source without import, export or await as a word of its own", () => {
    for (const source of [
      "module.exports = async (context) => ({ status: 200, body: 'hi' });",
      "exports.handler = () => 'x'; module.exports.other = 1;",
      "const imports = 1, exporter = 2, awaiting = 3, important$ = 4;",
    ]) {
      expect(mayBeModule(source), source).to.equal(false);
    }
  });

  it("has the warm-up rehearsal's function take the compile, so a real function with await is not the process's first", () => {
    // Without it the first compileFunction of the process (~0.25 ms more) landed in the real
    // specialize of every CommonJS function that awaits (per-step marks, 24 alternating samples).
    expect(mayBeModule(REHEARSAL_SOURCE)).to.equal(true);
    expect(detectFormat(Buffer.from(REHEARSAL_SOURCE), "/x/rehearsal.js")).to.equal("commonjs");
  });

  // `await` is no reserved word in a script: escaped it is an identifier, and one followed by an
  // operand fails the CommonJS compile with the await message. The compile sends such a file down
  // the ES module path, where an escaped keyword is an error of its own; the pre-check must not
  // turn that into CommonJS's misleading "await is only valid in async functions".
  const ESCAPED_AWAIT = [
    "aw\\u0061it Promise.resolve();\nmodule.exports = () => 1;",
    "module.exports = () => 1;\n\\u0061wait{",
    "\\u{61}wait x;",
    "a\\u0077ait x;",
  ];

  it("answers as the compile does for an await spelled with escapes", () => {
    for (const source of ESCAPED_AWAIT) {
      expect(byCompile(source), source).to.equal("module");
      expect(mayBeModule(source), source).to.equal(true);
      expect(detectFormat(Buffer.from(source), "/x/hello.js"), source).to.equal("module");
    }
  });

  it("reports an escaped await as the escaped keyword it is, with its line", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fizz-loader-unit-"));
    try {
      const code = Buffer.from(ESCAPED_AWAIT[0] ?? "");
      const err = await loadFunction({
        dir,
        filename: "hello.js",
        code,
        entrypoint: undefined,
      }).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).to.equal(
        "hello.js:1: SyntaxError: Keyword must not contain escaped characters",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("compiles to decide when a keyword is only in a comment or a string", () => {
    expect(mayBeModule("// import x\nmodule.exports = () => 1;")).to.equal(true);
    expect(mayBeModule("module.exports = () => 'export';")).to.equal(true);
    expect(mayBeModule("module.exports = () => 'export\\u0073';")).to.equal(true);
  });
});
