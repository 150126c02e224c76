// The runtime's background import of Flask (runtimes/python/fizz_preload.py) stopped by a
// specialize at a chosen point: inside a package whose submodule has already finished. A real
// interpreter runs the preloader on a package made for the test; the stop point is set by the
// package itself (it waits for the stop to be requested), so nothing here depends on timing.
import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FLASK_PYTHON } from "./flask-fixtures.js";

const RUNTIME_DIR = fileURLToPath(new URL("..", import.meta.url));

// `pkg/__init__.py` imports its submodule `pkg.child` (which finishes), then stops at `gate` until
// the preload is told to stop, then imports `after`: the preloader's stop lands there, with pkg
// half done and pkg.child done. Then "the function" imports pkg.child and uses it.
const SCENARIO = `
import sys, threading
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import fizz_preload

reached = threading.Event()
go = threading.Event()
preload = fizz_preload.Preloader("pkg")
preload.start()
reached.wait(30)
stopper = threading.Thread(target=preload.stop)
stopper.start()
while not preload._stop:
    pass
go.set()
stopper.join(30)
print("state", preload.state)
print("left", sorted(n for n in sys.modules if n == "pkg" or n.startswith("pkg.")))
import pkg.child
print("child", pkg.child.X)
`;

describe("python runtime: the Flask preload, stopped halfway through a package", function () {
  this.timeout(30_000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), "fizz-preload-"));
    mkdirSync(path.join(dir, "pkg"));
    writeFileSync(
      path.join(dir, "pkg", "__init__.py"),
      "import pkg.child\nimport gate\nimport after\n",
    );
    writeFileSync(path.join(dir, "pkg", "child.py"), "X = 'child value'\n");
    writeFileSync(
      path.join(dir, "gate.py"),
      "import __main__\n__main__.reached.set()\n__main__.go.wait(30)\n",
    );
    writeFileSync(path.join(dir, "after.py"), "Y = 1\n");
    writeFileSync(path.join(dir, "scenario.py"), SCENARIO);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("leaves no half-imported package behind: the next import of it works", () => {
    const r = spawnSync(FLASK_PYTHON, [path.join(dir, "scenario.py"), RUNTIME_DIR, dir], {
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(r.stderr).to.equal("");
    expect(r.stdout.trim().split("\n")).to.deep.equal([
      "state stopped",
      "left []",
      "child child value",
    ]);
  });
});
