import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { BUILD_CONSUMER, BUILD_STREAM } from "@fizz/events";
import { jetstreamManager } from "@nats-io/jetstream";
import { waitFor } from "@fizz/testkit";
import { BuildHarness } from "./build-harness";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";

const MS_LOCK = {
  name: "uses-ms",
  version: "1.0.0",
  lockfileVersion: 3,
  requires: true,
  packages: {
    "": { name: "uses-ms", version: "1.0.0", dependencies: { ms: "2.1.3" } },
    "node_modules/ms": {
      version: "2.1.3",
      resolved: "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz",
      integrity:
        "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==",
    },
  },
};
const MS_PACKAGE = JSON.stringify({
  name: "uses-ms",
  version: "1.0.0",
  main: "index.js",
  dependencies: { ms: "2.1.3" },
});
const MS_INDEX = "const ms = require('ms');\nmodule.exports = async () => ms(60000);\n";

/** Live (not zombie) processes running as `uid` (by real or effective uid). */
async function processesOf(uid: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const status = await readFile(`/proc/${name}/status`, "utf8");
      const ids = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
      if (/^State:\s+Z/m.test(status)) continue;
      if (ids && (Number(ids[1]) === uid || Number(ids[2]) === uid)) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

describe("builder (process backend): packages built from the build queue", function () {
  this.timeout(180_000);
  const h = new BuildHarness();
  const asRoot = process.getuid?.() === 0;

  before(async () => {
    await h.setUp();
    h.addEnvironment("nodejs", "fizz/env-node");
    h.addEnvironment("python", "fizz/env-python");
    h.addEnvironment("quick", "fizz/env-node", { timeoutSeconds: 2 });
    h.addEnvironment("tiny", "fizz/env-node", { maxDeploymentBytes: 2000 });
    await h.startBuilder();
  });
  after(() => h.tearDown());

  it("creates the build stream (work queue, file storage) and the durable consumer when the registry has not", async () => {
    const jsm = await jetstreamManager(h.nc);
    const info = await jsm.streams.info(BUILD_STREAM.name);
    expect(info.config.retention).to.equal("workqueue");
    expect(info.config.storage).to.equal("file");
    expect(info.config.subjects).to.deep.equal([h.s.buildRequested]);
    expect(
      (await jsm.consumers.info(BUILD_STREAM.name, BUILD_CONSUMER)).config.durable_name,
    ).to.equal(BUILD_CONSUMER);
  });

  it("builds a Node package with a lock file (npm ci): the deployment holds node_modules/ms", async () => {
    const source = await h.upload({
      "package.json": MS_PACKAGE,
      "package-lock.json": JSON.stringify(MS_LOCK),
      "index.js": MS_INDEX,
    });
    await h.requestBuild("node-ci", "nodejs", source);
    const r = await h.finalReport("node-ci");
    expect(r.state, `${r.message}\n${r.log}`).to.equal("succeeded");
    expect(r.sourceDigest).to.equal(source.digest);
    expect(r.log).to.include("$ npm ci --omit=dev");
    const states = h.reports.filter((x) => x.package.name === "node-ci").map((x) => x.state);
    expect(states).to.deep.equal(["running", "succeeded"]);
    const dir = await h.deployment(r.deployment!);
    const ms = JSON.parse(
      await readFile(path.join(dir, "node_modules/ms/package.json"), "utf8"),
    ) as { version: string };
    expect(ms.version).to.equal("2.1.3");
    expect(existsSync(path.join(dir, "index.js"))).to.equal(true);
    // The npm cache lives in the build directory, never in the deployment.
    expect(existsSync(path.join(dir, ".npm"))).to.equal(false);
  });

  it("builds a Node package without a lock file with npm install", async () => {
    const source = await h.upload({ "package.json": MS_PACKAGE, "index.js": MS_INDEX });
    await h.requestBuild("node-install", "nodejs", source);
    const r = await h.finalReport("node-install");
    expect(r.state, `${r.message}\n${r.log}`).to.equal("succeeded");
    expect(r.log).to.include("$ npm install --omit=dev");
    const dir = await h.deployment(r.deployment!);
    expect(existsSync(path.join(dir, "node_modules/ms/index.js"))).to.equal(true);
  });

  it("builds a Python package with pip from the environment's wheel directory (builder.env), offline", async function () {
    if (!existsSync(PYTHON)) this.skip();
    const pkg = path.join(h.dir, "wheel-src");
    const wheels = path.join(h.dir, "wheels");
    await mkdir(path.join(pkg, "hellofizz"), { recursive: true });
    await writeFile(
      path.join(pkg, "setup.py"),
      'from setuptools import setup\nsetup(name="hello-fizz", version="0.1", packages=["hellofizz"])\n',
    );
    await writeFile(path.join(pkg, "hellofizz/__init__.py"), 'GREETING = "hi from a wheel"\n');
    await run(PYTHON, [
      "-m",
      "pip",
      "wheel",
      "--no-deps",
      "--no-build-isolation",
      "--no-index",
      "-w",
      wheels,
      pkg,
    ]);
    await chmod(wheels, 0o755); // the build's uid reads it
    h.addEnvironment("py-local", "fizz/env-python", {
      env: { PIP_FIND_LINKS: wheels, PIP_NO_INDEX: "1" },
    });
    const source = await h.upload({
      "requirements.txt": "hello-fizz==0.1\n",
      "main.py": "import hellofizz\ndef main():\n    return hellofizz.GREETING\n",
    });
    await h.requestBuild("py-wheel", "py-local", source);
    const r = await h.finalReport("py-wheel");
    expect(r.state, `${r.message}\n${r.log}`).to.equal("succeeded");
    expect(r.log).to.include("pip install -r requirements.txt --target");
    const dir = await h.deployment(r.deployment!);
    expect(await readFile(path.join(dir, "hellofizz/__init__.py"), "utf8")).to.include(
      "hi from a wheel",
    );
    expect(existsSync(path.join(dir, "main.py"))).to.equal(true);
    const { stdout } = await run(PYTHON, ["-c", "import main; print(main.main())"], { cwd: dir });
    expect(stdout.trim()).to.equal("hi from a wheel");
  });

  it("runs a custom build command with SRC_PKG and DEPLOY_PKG; a non-empty DEPLOY_PKG is the deployment", async () => {
    const source = await h.upload({
      "build.sh":
        '#!/bin/sh\nset -e\nmkdir -p "$DEPLOY_PKG/lib"\ncp "$SRC_PKG/main.js" "$DEPLOY_PKG/"\necho built > "$DEPLOY_PKG/lib/marker.txt"\necho "built in $(pwd)"\n',
      "main.js": "module.exports = async () => 'custom';\n",
      "notes.txt": "source only\n",
    });
    await h.requestBuild("custom", "nodejs", source, "./build.sh");
    const r = await h.finalReport("custom");
    expect(r.state, `${r.message}\n${r.log}`).to.equal("succeeded");
    expect(r.log).to.match(/built in \/.*\/src/);
    const dir = await h.deployment(r.deployment!);
    expect((await readdir(dir)).sort()).to.deep.equal(["lib", "main.js"]);
    expect(await readFile(path.join(dir, "lib/marker.txt"), "utf8")).to.equal("built\n");
  });

  it("reports a failing build as failed with the exit code and the log tail", async () => {
    const source = await h.upload({ "index.js": "module.exports = 1;\n" });
    await h.requestBuild(
      "fails",
      "nodejs",
      source,
      "echo compiling; echo 'error: no such thing' >&2; exit 3",
    );
    const r = await h.finalReport("fails");
    expect(r.state).to.equal("failed");
    expect(r.message).to.match(/exited with code 3/);
    expect(r.log).to.include("compiling").and.to.include("error: no such thing");
    expect(r.deployment).to.equal(undefined);
  });

  it("kills a build at its time limit, with whatever it left running, and reports it timed out", async () => {
    const source = await h.upload({ "index.js": "module.exports = 1;\n" });
    const started = Date.now();
    await h.requestBuild(
      "slow",
      "quick",
      source,
      'echo "uid=$(id -u)"; (trap "" TERM; sleep 300) & setsid sleep 301 & sleep 200',
    );
    const r = await h.finalReport("slow");
    expect(r.state).to.equal("failed");
    expect(r.message).to.match(/^timed out after 2s/);
    expect(Date.now() - started).to.be.lessThan(20_000);
    if (asRoot) {
      const uid = Number(/uid=(\d+)/.exec(r.log ?? "")?.[1]);
      expect(uid).to.be.greaterThan(0);
      // SIGKILLed before the report; a moment for the kernel to finish them.
      await waitFor(async () => (await processesOf(uid)).length === 0, { timeoutMs: 3_000 });
    }
  });

  it("refuses an output over the environment's maxDeploymentBytes", async () => {
    const source = await h.upload({ "index.js": "module.exports = 1;\n" });
    await h.requestBuild("big", "tiny", source, 'head -c 200000 /dev/urandom > "$DEPLOY_PKG/blob"');
    const r = await h.finalReport("big");
    expect(r.state).to.equal("failed");
    expect(r.message).to.match(/output over 2000 bytes/);
  });

  it("reports failed when the environment does not exist", async () => {
    const source = await h.upload({ "index.js": "module.exports = 1;\n" });
    await h.requestBuild("orphan", "no-such-env", source);
    const r = await h.finalReport("orphan");
    expect(r.state).to.equal("failed");
    expect(r.message).to.equal("environment default/no-such-env does not exist");
  });

  it("skips a build whose package changed meanwhile (running report not applied) and takes it off the queue", async () => {
    h.applied.set("stale", false);
    const source = await h.upload({ "index.js": "module.exports = 1;\n" });
    await h.requestBuild("stale", "nodejs", source);
    await waitFor(() => h.reports.some((x) => x.package.name === "stale"));
    const jsm = await jetstreamManager(h.nc);
    await waitFor(async () => (await jsm.streams.info(BUILD_STREAM.name)).state.messages === 0, {
      what: "the stale request acknowledged",
    });
    expect(h.reports.filter((x) => x.package.name === "stale").map((x) => x.state)).to.deep.equal([
      "running",
    ]);
  });

  it("runs one build at a time at concurrency 1: the second starts after the first ended", async () => {
    const source = await h.upload({ "index.js": "module.exports = 1;\n" });
    await h.requestBuild("first", "nodejs", source, "sleep 1");
    await h.requestBuild("second", "nodejs", source, "sleep 1");
    await h.finalReport("second");
    const order = h.reports
      .filter((x) => x.package.name === "first" || x.package.name === "second")
      .map((x) => `${x.package.name}:${x.state}`);
    expect(order, JSON.stringify(h.reports.slice(-4))).to.deep.equal([
      "first:running",
      "first:succeeded",
      "second:running",
      "second:succeeded",
    ]);
  });

  it("at stop, kills the build under way and hands its request back; the next builder builds it", async () => {
    const source = await h.upload({ "index.js": "module.exports = 1;\n" });
    await h.requestBuild("interrupted", "nodejs", source, "sleep 4");
    await waitFor(() => h.reports.some((x) => x.package.name === "interrupted"));
    const stopping = Date.now();
    await h.stopBuilder();
    expect(Date.now() - stopping).to.be.lessThan(3_000);
    const sofar = h.reports.filter((x) => x.package.name === "interrupted");
    expect(sofar, JSON.stringify(sofar)).to.have.length(1);
    await h.startBuilder();
    const r = await h.finalReport("interrupted", 30_000);
    expect(r.state, `${r.message}\n${r.log}`).to.equal("succeeded");
    expect(
      h.reports.filter((x) => x.package.name === "interrupted").map((x) => x.state),
    ).to.deep.equal(["running", "running", "succeeded"]);
  });

  it("keeps the final report until the registry is back, then acknowledges the request", async () => {
    const source = await h.upload({ "index.js": "module.exports = 1;\n" });
    await h.requestBuild("patient", "nodejs", source, "sleep 1");
    await waitFor(() => h.reports.some((x) => x.package.name === "patient"));
    h.stopAnswering();
    await new Promise((r) => setTimeout(r, 4_000));
    expect(h.reports.filter((x) => x.package.name === "patient")).to.have.length(1);
    h.answerReports();
    const r = await h.finalReport("patient", 30_000);
    expect(r.state).to.equal("succeeded");
    const jsm = await jetstreamManager(h.nc);
    await waitFor(async () => (await jsm.streams.info(BUILD_STREAM.name)).state.messages === 0);
  });
});
