import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { parentDeathSetpriv, prepareCommand } from "../src/host-prepare";
import { alive, childrenOf, removeDir, SETPRIV, tempDir } from "./process-helpers";

const here = path.dirname(fileURLToPath(import.meta.url));
const HOST_PREPARE = path.resolve(here, "../src/host-prepare.ts");
const ESBUILD = createRequire(import.meta.url).resolve("esbuild");

describe("node runtime build (prepare.mjs) dies with the poolkeeper", function () {
  this.timeout(60_000);
  let dir: string;
  let parent: ChildProcess | undefined;
  const spared: number[] = [];

  beforeEach(() => {
    dir = tempDir("fizz-prepare-death-");
  });
  afterEach(() => {
    parent?.kill("SIGKILL");
    for (const pid of spared.splice(0))
      try {
        process.kill(pid, "SIGKILL"); // what the test found alive (a failure): not left behind
      } catch {
        // gone
      }
    removeDir(dir);
  });

  it("runs prepare.mjs through setpriv's parent-death signal, without a uid change, when setpriv is there", () => {
    expect(prepareCommand("/r/node/prepare.mjs", SETPRIV)).to.deep.equal([
      SETPRIV,
      "--no-new-privs",
      "--pdeathsig=SIGKILL",
      "--",
      process.execPath,
      "/r/node/prepare.mjs",
    ]);
    expect(prepareCommand("/r/node/prepare.mjs", undefined)).to.deep.equal([
      process.execPath,
      "/r/node/prepare.mjs",
    ]);
    expect(parentDeathSetpriv("/opt/setpriv")).to.equal("/opt/setpriv");
    expect(parentDeathSetpriv(undefined)).to.equal(existsSync(SETPRIV) ? SETPRIV : undefined);
  });

  it("a poolkeeper killed by SIGKILL while prepare.mjs runs takes it and its esbuild service along", async function () {
    if (!existsSync(SETPRIV)) this.skip();
    // A prepare.mjs that starts esbuild's service (as the real one's build does) and then hangs
    // there, so the poolkeeper's death falls in the prepare window.
    const node = path.join(dir, "node");
    mkdirSync(node);
    const pidFile = path.join(dir, "pid");
    writeFileSync(
      path.join(node, "prepare.mjs"),
      `import { writeFileSync } from "node:fs";
       const esbuild = (await import(${JSON.stringify(ESBUILD)})).default;
       await esbuild.context({ stdin: { contents: "export default 1" }, write: false });
       writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));
       setInterval(() => undefined, 60_000);`,
    );
    // The poolkeeper's part: NodeBuild.check() in a process of its own, killed below.
    parent = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        `import { NodeBuild } from ${JSON.stringify(HOST_PREPARE)};
         import { silentLogger } from "@fizz/kit";
         await new NodeBuild(${JSON.stringify(dir)}, silentLogger()).check();`,
      ],
      { cwd: path.resolve(here, ".."), stdio: "ignore" },
    );
    const prepare = await waitFor(() => (existsSync(pidFile) ? Number(readFileSync(pidFile)) : 0), {
      timeoutMs: 30_000,
      what: "prepare.mjs to start esbuild",
    });
    const esbuild = childrenOf(prepare);
    spared.push(prepare, ...esbuild);
    // setpriv exec'd node: prepare.mjs is the poolkeeper's own child (beside tsx's esbuild),
    // with its esbuild service under it.
    expect(childrenOf(parent.pid!)).to.include(prepare);
    expect(esbuild).to.have.length(1);

    parent.kill("SIGKILL");
    await waitFor(() => !alive(prepare) && esbuild.every((p) => !alive(p)), {
      timeoutMs: 20_000,
      what: "prepare.mjs and esbuild to die with their poolkeeper",
    });
  });
});
