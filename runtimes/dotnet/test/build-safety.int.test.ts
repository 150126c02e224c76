// Integration tests of how the C# runtime is built: build.sh against hostile file names (as the
// builder runs it), prepare.mjs rebuilding while others use .build/, and the test cache under
// concurrent builds. Real mcs, real processes.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { expect } from "chai";
import { BUILD_SCRIPT, compile, ensurePrepared } from "./fixtures.js";

const run = promisify(execFile);
const DOTNET_DIR = fileURLToPath(new URL("..", import.meta.url));
const USING = "using Fission.DotNetCore.Api;\n";

function listTree(dir: string, root = dir, into: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) listTree(path, root, into);
    else into.push(relative(root, path));
  }
  return into;
}

/** Runs build.sh over `files` in a scratch dir; the deploy dir and log, whether it failed or not. */
async function build(files: Record<string, string>) {
  const work = mkdtempSync(join(DOTNET_DIR, ".build", "safety-"));
  const src = join(work, "src");
  const out = join(work, "deploy");
  mkdirSync(out, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(src, path)), { recursive: true });
    writeFileSync(join(src, path), content);
  }
  const env = { SRC_PKG: src, DEPLOY_PKG: out, HOME: work, TMPDIR: work, PATH: process.env.PATH };
  try {
    const { stdout, stderr } = await run(BUILD_SCRIPT, [], { cwd: src, env });
    return { ok: true, log: stdout + stderr, deployed: listTree(out), work };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, log: `${e.stdout ?? ""}${e.stderr ?? ""}`, deployed: listTree(out), work };
  }
}

describe("dotnet build.sh: hostile file names", function () {
  const works: string[] = [];
  before(() => ensurePrepared());
  after(() => works.forEach((w) => rmSync(w, { recursive: true, force: true })));

  it("compiles a top-level file named -out:evil.cs as a source, never as an mcs option", async () => {
    const res = await build({
      "Function.cs": `${USING}public class FissionFunction { public string Execute(FissionContext c) { return Evil.Name; } }\n`,
      "-out:evil.cs": 'public static class Evil { public const string Name = "evil"; }\n',
      "-pkg:dotnet.cs": "public static class Pkg {}\n",
      "data/-r:x.txt": "data\n",
    });
    works.push(res.work);
    expect(res.log, res.log).to.not.match(/error/i);
    expect(res.ok).to.equal(true);
    expect(res.deployed.sort()).to.deep.equal([
      "data/-r:x.txt",
      "function.dll",
      "function.dll.mdb",
    ]);
    expect(existsSync(join(res.work, "src", "evil.cs"))).to.equal(false);
    expect(readFileSync(join(res.work, "src", "-out:evil.cs"), "utf8")).to.include("class Evil");
  });

  it("refuses a directory whose name holds a newline (forging /etc/passwd) and copies nothing", async () => {
    const res = await build({
      "Function.cs": `${USING}public class FissionFunction { public string Execute(FissionContext c) { return "x"; } }\n`,
      "x\n/etc/passwd": "not the real one\n",
      "y\n/etc/hosts.cs": "class H {}\n",
    });
    works.push(res.work);
    expect(res.ok).to.equal(false);
    expect(res.log).to.match(/refusing file names with control characters/);
    expect(res.log).to.match(/^\.\/[xy]\?/m);
    expect(res.deployed).to.deep.equal([]);
  });

  it("refuses a shipped library whose name mcs would split at a comma", async () => {
    const res = await build({
      "Function.cs": `${USING}public class FissionFunction { public string Execute(FissionContext c) { return "x"; } }\n`,
      "lib/a,System.Web.dll": "not a dll",
    });
    works.push(res.work);
    expect(res.ok).to.equal(false);
    expect(res.log).to.match(/refusing \.dll names with ','/);
  });
});

describe("dotnet prepare.mjs and the test cache under concurrency", function () {
  it("rebuilds into a new version while the old one stays usable, two prepares at once", async () => {
    // A copy of the runtime's sources, so a rebuild does not disturb this checkout's .build/.
    const root = mkdtempSync(join(DOTNET_DIR, ".build", "prepare-"));
    try {
      for (const part of ["prepare.mjs", "api", "host"]) {
        cpSync(join(DOTNET_DIR, part), join(root, part), { recursive: true });
      }
      const prep = () => run(process.execPath, [join(root, "prepare.mjs")]);
      await prep();
      const build = join(root, ".build");
      const first = readlinkSync(join(build, "current"));
      const hostFile = readdirSync(join(root, "host")).find((f) => f.endsWith(".cs")) ?? "";
      appendFileSync(join(root, "host", hostFile), "// changed\n");
      let done = false;
      const both = Promise.all([prep(), prep()]).finally(() => (done = true));
      let checks = 0;
      // Whatever moment a build.sh or an instance looks, both paths resolve to complete files.
      while (!done) {
        expect(readFileSync(join(build, "fizz-dotnet.exe")).length).to.be.greaterThan(0);
        expect(readFileSync(join(build, "Fission.DotNetCore.Api.dll")).length).to.be.greaterThan(0);
        checks++;
        await new Promise((r) => setTimeout(r, 5));
      }
      await both;
      expect(checks).to.be.greaterThan(10);
      const second = readlinkSync(join(build, "current"));
      expect(second).to.not.equal(first);
      expect(existsSync(join(build, first, "fizz-dotnet.exe"))).to.equal(true);
      expect(readdirSync(build).filter((f) => f.startsWith(".tmp-"))).to.deep.equal([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("builds one fixture twice at once: both get the package, the cache keeps one entry", async () => {
    const tag = randomBytes(6).toString("hex");
    const files = {
      "race.cs": `${USING}public class FissionFunction { public string Execute(FissionContext c) { return "${tag}"; } }\n`,
    };
    const [a, b] = await Promise.all([compile(files), compile(files)]);
    expect(Object.keys(a ?? {}).sort()).to.deep.equal(["function.dll", "function.dll.mdb"]);
    expect(Buffer.compare(a?.["function.dll"] as Buffer, b?.["function.dll"] as Buffer)).to.equal(
      0,
    );
    const cache = join(DOTNET_DIR, ".build", "test-cache");
    expect(readdirSync(cache).filter((f) => f.startsWith(".tmp-"))).to.deep.equal([]);
  });
});
