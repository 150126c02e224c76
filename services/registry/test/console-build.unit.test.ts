import { existsSync, readFileSync, statSync, utimesSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { buildConsole, ensureConsoleBuilt } from "../../../scripts/lib/console-build.mjs";

/** What `npm start` does with the console before it starts the registry. */
describe("the launcher's console build (scripts/lib/console-build.mjs)", function () {
  this.timeout(120_000);
  let work: string;
  const noEsbuild = () => Promise.reject(new Error("Cannot find package 'esbuild'"));

  beforeEach(async () => {
    work = await mkdtemp(path.join(tmpdir(), "fizz-console-build-"));
  });
  afterEach(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it("builds a page naming hashed assets that exist, and does not rebuild unchanged sources", async () => {
    const dist = path.join(work, "dist");
    expect(await ensureConsoleBuilt({ dist, warn: () => undefined })).to.equal(dist);
    const html = readFileSync(path.join(dist, "index.html"), "utf8");
    const assets = [...html.matchAll(/assets\/([\w.-]+)/g)].map((m) => m[1]!);
    expect(assets).to.have.length(2);
    for (const a of assets) expect(existsSync(path.join(dist, "assets", a)), a).to.equal(true);
    const before = statSync(path.join(dist, "index.html")).mtimeMs;
    let builds = 0;
    const counted = (out: string) => ((builds += 1), buildConsole(out));
    expect(await ensureConsoleBuilt({ dist, build: counted })).to.equal(dist);
    expect(builds).to.equal(0);
    expect(statSync(path.join(dist, "index.html")).mtimeMs).to.equal(before);
  });

  it("without esbuild, starts with no console and says why instead of failing", async () => {
    const warnings: string[] = [];
    const dist = path.join(work, "never-built");
    const dir = await ensureConsoleBuilt({
      dist,
      build: noEsbuild,
      warn: (l) => warnings.push(l),
    });
    expect(dir).to.equal(undefined);
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.match(/web console not built \(Cannot find package 'esbuild'\)/);
  });

  it("without esbuild, serves the previous build when the sources changed since", async () => {
    const dist = path.join(work, "dist");
    await buildConsole(dist);
    // Older than every source: the launcher wants a rebuild it cannot do.
    utimesSync(path.join(dist, "index.html"), 0, 0);
    const warnings: string[] = [];
    const dir = await ensureConsoleBuilt({
      dist,
      build: noEsbuild,
      warn: (l) => warnings.push(l),
    });
    expect(dir).to.equal(dist);
    expect(warnings[0]).to.match(/not rebuilt .*serving the previous build/);
  });
});
