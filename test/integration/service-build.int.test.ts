import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  ensureServicesBuilt,
  SERVICE_NAMES,
  serviceBundle,
  staleness,
} from "../../scripts/lib/service-build.mjs";

/** The services' bundles the launcher runs (scripts/lib/service-build.mjs). */
describe("service bundles", function () {
  this.timeout(180_000);
  let dist: string;
  before(async () => {
    dist = await mkdtemp(path.join(tmpdir(), "fizz-dist-"));
  });
  after(async () => {
    await rm(dist, { recursive: true, force: true });
  });

  it("builds every service once when two launchers build at the same time, whole files only", async () => {
    expect(staleness(dist)).to.equal("not built yet");
    await Promise.all([ensureServicesBuilt({ dist }), ensureServicesBuilt({ dist })]);
    expect(staleness(dist)).to.equal(undefined);
    for (const svc of SERVICE_NAMES) expect(existsSync(serviceBundle(svc, dist))).to.equal(true);
    // No temporary file left behind, and every chunk an entry names is there.
    const all = [...readdirSync(dist), ...readdirSync(path.join(dist, "chunks"))];
    expect(all.filter((f) => f.endsWith(".tmp"))).to.deep.equal([]);
    for (const svc of SERVICE_NAMES) {
      const text = readFileSync(serviceBundle(svc, dist), "utf8");
      for (const [, chunk] of text.matchAll(/from"\.\/(chunks\/[^"]+)"/g))
        expect(existsSync(path.join(dist, chunk!)), `${svc} imports ${chunk}`).to.equal(true);
    }
  });

  it("loads every bundle: a service with a bad variable names it and exits", () => {
    // Each bundle runs (imports resolve, the shared chunks load and evaluate, undici-core.mjs
    // included) up to config validation.
    for (const svc of SERVICE_NAMES) {
      const variable = `FIZZ_${svc.toUpperCase()}_PORT`;
      const r = spawnSync(process.execPath, [serviceBundle(svc, dist)], {
        env: { PATH: process.env.PATH, [variable]: "not-a-port" },
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(r.status, `${svc}: ${r.stderr}`).to.equal(1);
      expect(r.stdout + r.stderr, svc).to.contain(variable);
    }
  });

  it("gives the gateway undici's dispatchers only, not its index, and the poolkeeper no undici at start", () => {
    // service-build.mjs resolves our `import … from "undici"` to undici-core.mjs: undici's index
    // evaluates fetch, WebSocket, the cache stores and the mocks at start-up (~6 MB resident).
    // Code loaded on demand (the Kubernetes client's chunks) is not looked at.
    const gateway = staticallyLoaded(serviceBundle("gateway", dist));
    // The walk found undici's dispatchers, so the absence below means something.
    expect(gateway).to.contain("DispatcherBase");
    for (const marker of ["SqliteCacheStore", "MockAgent"])
      expect(gateway.includes(marker), `the gateway loads undici's ${marker}`).to.equal(false);
    // The poolkeeper talks to its instances over node:http (instance-http.ts); only its builds in
    // pods, loaded with the Kubernetes code on demand, use undici.
    const poolkeeper = staticallyLoaded(serviceBundle("poolkeeper", dist));
    expect(poolkeeper).to.contain("instanceAgent");
    for (const marker of ["DispatcherBase", "SqliteCacheStore", "MockAgent"])
      expect(poolkeeper.includes(marker), `the poolkeeper loads undici's ${marker}`).to.equal(
        false,
      );
  });

  it("gives the registry and the poolkeeper the archive code on first use, and rebuilds when that plugin changes", () => {
    // scripts/lib/lazy-modules.mjs, wired into the real build before the plugin that resolves
    // @fizz/ imports itself (the other way round the facade is never used): tar and yauzl are in
    // a chunk only an import() names. Its own test builds a toy entry; this is the services'.
    const archiveChunks = readdirSync(path.join(dist, "chunks")).filter(
      (c) => c.endsWith(".mjs") && readFileSync(path.join(dist, "chunks", c), "utf8").includes(TAR),
    );
    expect(archiveChunks, "a chunk holds tar").to.have.length(1);
    for (const svc of ["registry", "poolkeeper"]) {
      const text = staticallyLoaded(serviceBundle(svc, dist));
      expect(text.includes(TAR), `${svc} loads tar at start`).to.equal(false);
      expect(text.includes(YAUZL), `${svc} loads yauzl at start`).to.equal(false);
      expect(text, svc).to.contain(`import("./${archiveChunks[0]!}")`);
    }
    // The plugin shapes the bundles but is no input esbuild lists: the stamp names it, so an edit
    // to it makes the build stale.
    const stamp = JSON.parse(readFileSync(path.join(dist, ".services-build.json"), "utf8")) as {
      inputs: string[];
    };
    expect(stamp.inputs).to.include("scripts/lib/lazy-modules.mjs");
  });
});

// Markers of tar's and yauzl's code in a bundle (strings kept by minification).
const TAR = "TAR_ENTRY_INVALID";
const YAUZL = "invalid central directory file header signature";

/** The text of an entry and of every chunk it imports statically, transitively (no `import()`). */
function staticallyLoaded(entry: string): string {
  const seen = new Set<string>();
  const texts: string[] = [];
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    texts.push(text);
    // Minified static imports: `import{a as b}from"./chunk-X.mjs"` or `import"./chunk-X.mjs"`
    // (an entry names "./chunks/…"); a dynamic one is `import("./…")`, not matched.
    for (const [, rel] of text.matchAll(/(?:\bfrom|\bimport)\s*"(\.\/[^"]+\.mjs)"/g))
      visit(path.join(path.dirname(file), rel!));
  };
  visit(entry);
  return texts.join("\n");
}
