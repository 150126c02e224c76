import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
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

  it("fails the build for an import the facade cannot stand in for", async () => {
    // esbuild itself refuses only a named import of a missing name: a namespace import builds with
    // a warning (the name is undefined at run time) and a re-export builds silently (a
    // ReferenceError at run time), so `err instanceof archive.ArchiveError` would throw, not 400.
    const { build } = await import("esbuild");
    const src = path.join(dir, "forms");
    mkdirSync(src, { recursive: true });
    const bundle = async (name: string, text: string, entry = text) => {
      writeFileSync(path.join(src, `${name}.ts`), text);
      writeFileSync(path.join(src, `${name}-entry.ts`), entry);
      await build({
        entryPoints: [path.join(src, `${name}-entry.ts`)],
        outdir: path.join(dir, `forms-out-${name}`),
        nodePaths: [path.join(ROOT, "node_modules")],
        bundle: true,
        splitting: true,
        platform: "node",
        format: "esm",
        write: false,
        plugins: [lazyModules],
        logLevel: "silent",
      });
    };
    const refused: Record<string, [string, string]> = {
      namespace: [
        'import * as archive from "@fizz/kit/archive";\nexport const E = archive.ArchiveError;',
        'import { E } from "./namespace";\nconsole.log(E);',
      ],
      "re-export": [
        "export { ArchiveError } from '@fizz/kit/archive';",
        'import { ArchiveError } from "./re-export";\nconsole.log(ArchiveError);',
      ],
      "export-star": [
        'export * from "@fizz/kit/archive";',
        'import * as a from "./export-star";\nconsole.log(a);',
      ],
      "side-effect": ['import "@fizz/kit/archive";', 'import "./side-effect";'],
    };
    for (const [name, [text, entry]] of Object.entries(refused)) {
      const err = await bundle(name, text, entry).then(
        () => undefined,
        (e: unknown) => e as { errors?: { text: string }[] },
      );
      expect(err, `${name} built`).not.to.equal(undefined);
      expect(err!.errors?.map((e) => e.text).join("\n"), name).to.contain("@fizz/kit/archive");
    }
    // What the services write still builds: named imports of listed names, types, renames.
    await bundle(
      "named",
      [
        'import { type ArchiveLimits, canonicalize as c, extractArchive } from "@fizz/kit/archive";',
        'import type { ArchiveRule } from "@fizz/kit/archive";',
        "const l: ArchiveLimits | ArchiveRule | undefined = undefined;",
        "console.log(c, extractArchive, l);",
      ].join("\n"),
      'import "./named";',
    );
  });

  it("bundles the module into a chunk loaded on first call, sharing @fizz/events with the entry", async () => {
    const out = path.join(dir, "out");
    await buildEntry(out, [
      'import { FizzError } from "@fizz/events";',
      'import { extractArchive } from "@fizz/kit/archive";',
      'import { writeFileSync } from "node:fs";',
      "const [, , file, dest] = process.argv;",
      'writeFileSync(file, "not an archive at all");',
      "try { await extractArchive({ path: file }, dest); console.log('extracted'); }",
      "catch (err) { console.log(JSON.stringify({ fizz: err instanceof FizzError, code: err.code })); }",
    ]);
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

  it("a chunk that fails to load rejects every waiting call, and the next call loads it again", async () => {
    // The facade caches the import()'s promise for concurrent first calls, but not a failure: a
    // load that failed once (a chunk missing for a moment) must not fail every later upload.
    const out = path.join(dir, "out-retry");
    await buildEntry(out, [
      'import { detectFormat } from "@fizz/kit/archive";',
      'import { renameSync } from "node:fs";',
      "let unhandled = 0;",
      'process.on("unhandledRejection", () => { unhandled++; });',
      "const [, , chunk, file] = process.argv;",
      'renameSync(chunk, chunk + ".away");',
      "const first = await Promise.allSettled([detectFormat(file), detectFormat(file)]);",
      'renameSync(chunk + ".away", chunk);',
      "const again = await detectFormat(file);",
      "await new Promise((r) => setTimeout(r, 50));",
      "console.log(JSON.stringify({ first: first.map((r) => r.reason?.code), again, unhandled }));",
    ]);
    const archive = readdirSync(path.join(out, "chunks")).find(
      (c) => c.startsWith("archive-") && c.endsWith(".mjs"),
    );
    const file = path.join(dir, "gzip-head");
    writeFileSync(file, Buffer.from([0x1f, 0x8b]));
    const r = spawnSync(
      process.execPath,
      [path.join(out, "entry.mjs"), path.join(out, "chunks", archive!), file],
      { encoding: "utf8", timeout: 30_000 },
    );
    expect(r.stderr).to.equal("");
    expect(JSON.parse(r.stdout)).to.deep.equal({
      first: ["ERR_MODULE_NOT_FOUND", "ERR_MODULE_NOT_FOUND"],
      again: "tar.gz",
      unhandled: 0,
    });
  });
});

/** Bundles `lines` as the services are bundled (ESM, code splitting) with the lazy plugin only. */
async function buildEntry(out: string, lines: string[]): Promise<void> {
  const { build } = await import("esbuild");
  await build({
    stdin: {
      contents: lines.join("\n"),
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
}
