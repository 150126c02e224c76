import { expect } from "chai";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { SPAWNER_SCRIPT } from "../src/spawner-client";
import { PYTHON, useSpawnerHarness } from "./spawner-harness";

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
});
