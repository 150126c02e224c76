import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { LAZY_MODULES, lazyModules } from "../../scripts/lib/lazy-modules.mjs";
import { ROOT } from "../../scripts/lib/prereqs.mjs";

/**
 * The bundles load @fizz/kit/archive on its first call (scripts/lib/lazy-modules.mjs). What broke
 * when this was an import() in the services' source: the lazily loaded code had a second
 * @fizz/events, and its errors were not `instanceof FizzError` for the service (500, not 400).
 * Under tsx the source's static import is unchanged (services/registry/test/archives.int.test.ts,
 * services/poolkeeper/test/build.int.test.ts); this checks the bundle side.
 */
describe("lazily loaded modules in the service bundles", function () {
  this.timeout(120_000);
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "fizz-lazy-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("takes only async functions lazily (a caller already waits for their promise)", async () => {
    for (const [spec, names] of Object.entries(LAZY_MODULES)) {
      const mod = (await import(spec)) as Record<string, unknown>;
      for (const n of names) {
        const f = mod[n];
        expect(typeof f, `${spec} ${n}`).to.equal("function");
        expect((f as () => unknown).constructor.name, `${spec} ${n}`).to.equal("AsyncFunction");
      }
    }
  });

  it("bundles the module into a chunk loaded on first call, sharing @fizz/events with the entry", async () => {
    const { build } = await import("esbuild");
    const out = path.join(dir, "out");
    await build({
      stdin: {
        contents: [
          'import { FizzError } from "@fizz/events";',
          'import { extractArchive } from "@fizz/kit/archive";',
          'import { writeFileSync } from "node:fs";',
          "const [, , file, dest] = process.argv;",
          'writeFileSync(file, "not an archive at all");',
          "try { await extractArchive({ path: file }, dest); console.log('extracted'); }",
          "catch (err) { console.log(JSON.stringify({ fizz: err instanceof FizzError, code: err.code })); }",
        ].join("\n"),
        resolveDir: path.join(ROOT, "services"),
        sourcefile: "entry.ts",
        loader: "ts",
      },
      outdir: out,
      entryNames: "entry",
      chunkNames: "chunks/[name]-[hash]",
      outExtension: { ".js": ".mjs" },
      bundle: true,
      splitting: true,
      platform: "node",
      target: "node20",
      format: "esm",
      banner: {
        js: "import { createRequire as __r } from 'node:module'; const require = __r(import.meta.url);",
      },
      plugins: [lazyModules],
      logLevel: "error",
    });
    const entry = readFileSync(path.join(out, "entry.mjs"), "utf8");
    // The archive code (tar, yauzl) is a chunk of its own that only an import() names.
    const chunks = readdirSync(path.join(out, "chunks"));
    const archive = chunks.find((c) => c.startsWith("archive-"));
    expect(archive, chunks.join(", ")).to.be.a("string");
    const staticallyLoaded = [entry];
    for (const [, c] of entry.matchAll(/from\s*"\.\/(chunks\/[^"]+)"/g))
      staticallyLoaded.push(readFileSync(path.join(out, c!), "utf8"));
    for (const text of staticallyLoaded) {
      expect(text).not.to.match(new RegExp(`from\\s*"[^"]*${archive!}"`));
      expect(text).not.to.contain("node_modules/yauzl");
    }
    const file = path.join(dir, "upload.bin");
    writeFileSync(file, "");
    const r = spawnSync(
      process.execPath,
      [path.join(out, "entry.mjs"), file, path.join(dir, "x")],
      {
        encoding: "utf8",
        timeout: 30_000,
      },
    );
    expect(r.stderr).to.equal("");
    expect(JSON.parse(r.stdout)).to.deep.equal({ fizz: true, code: "ARCHIVE_UNSAFE" });
  });
});
