import { expect } from "chai";
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { cpSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { SPAWNER_SCRIPT } from "../src/spawner-client";
import { PYTHON, readAll, useSpawnerHarness } from "./spawner-harness";

/**
 * Writes, for each module of the copied package, what Python would take in place of its .py: a
 * cached .pyc with an unchecked hash (no source change invalidates it; git ignores __pycache__, so
 * it shows nowhere) and an extension module of the same name (a default finder prefers it).
 */
const PLANT_COMPILED = `
import importlib.machinery, importlib.util, os, py_compile, sys
pkg, marker = sys.argv[1], sys.argv[2]
evil = os.path.join(os.path.dirname(pkg), "evil.py")
with open(evil, "w") as f:
    f.write("open(%r, 'a').write(__name__ + chr(10))" % marker)
for name in ("__init__", "privs", "child", "killpass", "server"):
    src = os.path.join(pkg, name + ".py")
    py_compile.compile(evil, cfile=importlib.util.cache_from_source(src), dfile=src,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if name != "__init__":
        with open(os.path.join(pkg, name + importlib.machinery.EXTENSION_SUFFIXES[0]), "wb") as f:
            f.write(b"not an ELF file")
`;

/**
 * The spawner runs as root and is split into a package (runtimes/spawner/fizzspawn) beside its
 * script: only that package and the standard library may be imported, never a module from the
 * directory it is started in or one an environment variable names.
 */
describe("spawner: what it imports", function () {
  this.timeout(30_000);
  const h = useSpawnerHarness("fizz-spawner-l-");

  it("imports its package from beside its script only: a fizzspawn package or stdlib-named module in its working directory or on PYTHONPATH never runs", async () => {
    const evil = path.join(h.dir, "evil");
    const marker = path.join(h.dir, "ran");
    const plant = `open(${JSON.stringify(marker)}, "a").write(__name__ + "\\n")\n`;
    mkdirSync(path.join(evil, "fizzspawn"), { recursive: true });
    for (const f of ["fizzspawn/__init__.py", "fizzspawn/server.py", "json.py", "selectors.py"])
      writeFileSync(path.join(evil, f), plant);
    const py = spawn(
      PYTHON,
      ["-I", "-S", SPAWNER_SCRIPT, path.join(h.dir, "x.sock"), `${process.pid}`],
      {
        cwd: evil,
        env: { PATH: "/usr/bin:/bin", PYTHONPATH: evil, PYTHONSTARTUP: path.join(evil, "json.py") },
        stdio: ["pipe", "pipe", "ignore"],
      },
    );
    const [line] = (await once(createInterface({ input: py.stdout }), "line")) as [string];
    expect(line).to.match(/^\{"ev":"hello"/);
    const exited = once(py, "exit");
    py.stdin.end();
    await exited;
    expect(existsSync(marker), "a planted module ran").to.equal(false);
  });

  it("runs its package's .py files only: a cached .pyc (unchecked hash) or a compiled module of the same name in the package directory is never loaded", async () => {
    const tree = path.join(h.dir, "spawner");
    cpSync(path.dirname(SPAWNER_SCRIPT), tree, { recursive: true });
    const marker = path.join(h.dir, "ran");
    execFileSync(PYTHON, ["-I", "-S", "-c", PLANT_COMPILED, path.join(tree, "fizzspawn"), marker]);
    const sp = await h.start({ script: path.join(tree, "fizz_spawner.py"), log: () => undefined });
    const child = await sp.spawn({
      file: "echo",
      args: ["served"],
      cwd: "/",
      env: { PATH: "/usr/bin:/bin" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    expect(await readAll(child.stdout)).to.equal("served\n");
    expect(existsSync(marker), "planted bytecode ran").to.equal(false);
  });
});
