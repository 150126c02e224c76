// Custom environments: the example Perl environment (examples/custom-env) passes the core
// contract, and `npm run test:runtime -- --env <dir>` checks a custom environment from its
// fizz-runtime.json: exit 0 when it conforms, non-zero when it does not, a usage error naming
// --env for anything else.
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "chai";
import { describeCoreContract } from "../contract-core.js";
import { loadCustomEnv } from "../custom-env.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const EXAMPLE = path.join(ROOT, "examples/custom-env");

describeCoreContract(loadCustomEnv(EXAMPLE));

function testRuntime(env: string) {
  return spawnSync(process.execPath, ["scripts/test-runtime.mjs", "--env", env], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 300_000,
  });
}

describe("npm run test:runtime -- --env <custom environment>", function () {
  this.timeout(300_000);
  let scratch: string;
  before(() => (scratch = mkdtempSync(path.join(tmpdir(), "fizz-custom-env-"))));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it("exits 0 for the example Perl environment, having run the core suite", () => {
    const run = testRuntime("examples/custom-env");
    expect(run.status, run.stdout + run.stderr).to.equal(0);
    expect(run.stdout).to.include("perl runtime: the core runtime contract");
    expect(run.stdout).to.match(/\d+ passing/);
    expect(run.stdout).to.not.match(/failing/);
  });

  it("exits non-zero for an environment whose runtime does not keep the contract", () => {
    const dir = path.join(scratch, "broken");
    cpSync(EXAMPLE, dir, { recursive: true });
    // The runtime never comes up: every check fails, none is skipped.
    const example = JSON.parse(
      readFileSync(path.join(EXAMPLE, "fizz-runtime.json"), "utf8"),
    ) as object;
    const config = { ...example, command: ["perl", "-e", "exit 3"] };
    writeFileSync(path.join(dir, "fizz-runtime.json"), JSON.stringify(config));
    const run = testRuntime(dir);
    expect(run.status).to.not.equal(0);
    expect(run.stdout).to.match(/\d+ failing/);
  });

  it("fails with a usage error naming --env for an unknown environment", () => {
    for (const args of [["--env", "nope"], []]) {
      const run = spawnSync(process.execPath, ["scripts/test-runtime.mjs", ...args], {
        cwd: ROOT,
        encoding: "utf8",
      });
      expect(run.status).to.equal(2);
      expect(run.stderr).to.include("usage: npm run test:runtime -- --env <name>");
      if (args.length) expect(run.stderr).to.include('--env "nope"');
    }
  });

  it("names what is wrong in a fizz-runtime.json", () => {
    const dir = path.join(scratch, "bad-config");
    mkdirSync(dir);
    const write = (value: unknown) =>
      writeFileSync(path.join(dir, "fizz-runtime.json"), JSON.stringify(value));
    write({ name: "x", command: ["perl"], fixtures: { hello: "hello.pl" } });
    expect(() => loadCustomEnv(dir)).to.throw(/fixtures lacks echo, slow, throws, loadFailure/);
    write({ name: "x", command: "perl server.pl", fixtures: {} });
    expect(() => loadCustomEnv(dir)).to.throw(/"command" must be a non-empty argv array/);
    const fixtures = { hello: "h", echo: "e", slow: "s", throws: "t", loadFailure: { file: "b" } };
    write({ name: "x", command: ["perl"], fixtures });
    expect(() => loadCustomEnv(dir)).to.throw(/loadFailure must be \{"file": \.\.\., "line"/);
    write({
      name: "x",
      command: ["perl"],
      fixtures: { ...fixtures, loadFailure: { file: "b", line: 3 } },
    });
    expect(() => loadCustomEnv(dir)).to.throw(/fixtures\.hello: no file/);
  });
});
