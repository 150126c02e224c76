import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { expect } from "chai";
import { BuildHarness } from "./build-harness";

/**
 * Build code is user code (npm install scripts, setup.py, build.sh): here a build script does what
 * an attacker's would, and each attempt must come to nothing. The uid assertions need root (the
 * poolkeeper runs as root in CI); elsewhere builds run as the launcher's user and those tests skip.
 */
const SECRET = `poolkeeper-secret-${Math.random().toString(36).slice(2)}`;

/** The variables a build may see: the documented ones, and what sh itself sets. */
const ALLOWED = new Set([
  "PATH",
  "HOME",
  "TMPDIR",
  "LANG",
  "TZ",
  "SRC_PKG",
  "DEPLOY_PKG",
  "npm_config_cache",
  "npm_config_update_notifier",
  "npm_config_fund",
  "npm_config_audit",
  "PIP_INDEX_URL",
  "PWD",
  "OLDPWD",
  "SHLVL",
  "_",
]);

describe("builder isolation: a build script cannot reach the poolkeeper or the platform", function () {
  this.timeout(120_000);
  const h = new BuildHarness();
  const asRoot = process.getuid?.() === 0;
  let dataDir: string;
  let log: string;

  before(async () => {
    // In the poolkeeper's environment (this process), as NATS credentials would be.
    process.env.FIZZ_TEST_NATS_PASSWORD = SECRET;
    await h.setUp();
    dataDir = path.join(h.dir, ".fizz");
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await writeFile(path.join(dataDir, "credentials.json"), `{"nats":"${SECRET}"}`, {
      mode: 0o600,
    });
    h.addEnvironment("nodejs", "fizz/env-node", {
      env: { PIP_INDEX_URL: "http://127.0.0.1:9/simple" },
    });
    await h.startBuilder();
    const script = [
      "#!/bin/sh",
      'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"',
      'echo "--- env"; env | cut -d= -f1 | sed "s/^/ENV /"',
      'echo "--- own"; env',
      `echo "--- parent"; cat /proc/$PPID/environ 2>&1 | tr '\\0' '\\n'`,
      `echo "--- poolkeeper"; cat /proc/${process.pid}/environ 2>&1 | tr '\\0' '\\n'`,
      `echo "--- poolkeeper cmdline"; cat /proc/${process.pid}/cmdline 2>&1 | tr '\\0' ' '; echo`,
      `echo "--- credentials"; cat ${dataDir}/credentials.json 2>&1`,
      `echo "--- list data"; ls ${dataDir} 2>&1`,
      `echo "--- builds root"; ls ${path.join(h.dir, "builds")} 2>&1`,
      `echo "--- signal"; kill -0 ${process.pid} 2>&1 && echo "SIGNAL-OK"`,
      'echo "--- shadow"; cat /etc/shadow 2>&1 | head -1',
      // Links that would make the (root) packer read what the build may not.
      'ln -s /etc/shadow "$DEPLOY_PKG/shadow-symlink"',
      `ln -s ${dataDir}/credentials.json "$DEPLOY_PKG/creds-symlink"`,
      'echo ok > "$DEPLOY_PKG/ok.txt"',
      "echo done",
    ].join("\n");
    const source = await h.upload({ "attack.sh": `${script}\n` });
    await h.requestBuild("attack", "nodejs", source, "./attack.sh");
    const r = await h.finalReport("attack");
    expect(r.state, `${r.message}\n${r.log}`).to.equal("succeeded");
    log = r.log ?? "";
  });
  after(async () => {
    delete process.env.FIZZ_TEST_NATS_PASSWORD;
    await h.tearDown();
  });

  it("never shows the poolkeeper's environment to the build, in its own env or through /proc", () => {
    expect(log).to.include("done");
    expect(log).to.not.include(SECRET);
    const keys = [...log.matchAll(/^ENV (\S+)$/gm)].map((m) => m[1]);
    expect(keys).to.include("PATH").and.to.include("PIP_INDEX_URL");
    expect(keys.filter((k) => !ALLOWED.has(k!))).to.deep.equal([]);
  });

  it("runs as a uid of its own, without groups, that cannot read or signal the poolkeeper", function () {
    if (!asRoot) this.skip();
    const id = /uid=(\d+) gid=(\d+) groups=(\S+)/.exec(log);
    expect(Number(id?.[1])).to.be.greaterThan(0);
    expect(id?.[2]).to.equal(id?.[1]);
    expect(id?.[3]).to.equal(id?.[2]);
    expect(section("poolkeeper")).to.match(/Permission denied/);
    expect(section("signal"))
      .to.match(/not permitted/i)
      .and.to.not.include("SIGNAL-OK");
  });

  it("cannot read the platform's files, /etc/shadow, or list the other builds", function () {
    if (!asRoot) this.skip();
    expect(section("credentials")).to.match(/Permission denied/);
    expect(section("list data")).to.match(/Permission denied/);
    expect(section("builds root")).to.match(/Permission denied/);
    expect(section("shadow")).to.match(/Permission denied/);
  });

  it("ships no link to a file outside the build in the deployment", async () => {
    const r = h.reports.find((x) => x.package.name === "attack" && x.state === "succeeded")!;
    const dir = await h.deployment(r.deployment!);
    const files = await readdir(dir);
    expect(files).to.include("ok.txt");
    expect(files).to.not.include("shadow-symlink").and.to.not.include("creds-symlink");
    for (const f of files) expect(await readFile(path.join(dir, f), "utf8")).to.not.include(SECRET);
  });

  it("ships no hard link to a file of root's (the kernel refuses it, or the builder does)", async function () {
    if (!asRoot) this.skip();
    const source = await h.upload({ "index.js": "module.exports = 1;\n" });
    const creds = path.join(dataDir, "credentials.json");
    await h.requestBuild(
      "hardlink",
      "nodejs",
      source,
      `ln ${creds} "$DEPLOY_PKG/creds" 2>&1 || echo "hardlink refused"; echo ok > "$DEPLOY_PKG/ok.txt"`,
    );
    const r = await h.finalReport("hardlink");
    if (r.state === "failed") {
      expect(r.message).to.match(/was not written by the build/);
      return;
    }
    expect(r.log).to.include("hardlink refused");
    const dir = await h.deployment(r.deployment!);
    expect(await readdir(dir)).to.deep.equal(["ok.txt"]);
  });

  it("refuses a build that swapped its source directory for a link to /", async () => {
    const source = await h.upload({ "index.js": "module.exports = 1;\n" });
    await h.requestBuild(
      "swap",
      "nodejs",
      source,
      'cd / && rm -rf "$SRC_PKG" && ln -s / "$SRC_PKG"',
    );
    const r = await h.finalReport("swap");
    expect(r.state).to.equal("failed");
    expect(r.message).to.match(/src\/ is no longer a directory/);
  });

  it("removes the build directory and leaves nothing of the build running", async () => {
    const root = path.join(h.dir, "builds");
    expect(existsSync(root)).to.equal(true);
    expect((await readdir(root)).filter((d) => !d.startsWith("."))).to.deep.equal([]);
  });

  function section(name: string): string {
    const start = log.indexOf(`--- ${name}\n`);
    if (start < 0) return "";
    const rest = log.slice(start + name.length + 5);
    const end = rest.indexOf("\n--- ");
    return end < 0 ? rest : rest.slice(0, end);
  }
});
