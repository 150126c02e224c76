import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { silentLogger } from "@fizz/kit";
import { expect } from "chai";
import { ProcessBuildRunner } from "../src/build/index";
import { LogTail } from "../src/build/log-tail";
import { loadConfig } from "../src/config";
import { environment } from "./harness";

/**
 * "source archive refused" tells a user their upload broke a rule; it must not be said of what
 * went wrong on the platform's side while unpacking (a full disk, a file it could not read): that
 * is a build that could not run, logged for the operator (job.ts), not the user's fault.
 */
describe("process builder: a source archive it cannot unpack", function () {
  this.timeout(60_000);
  let dir: string;
  let runner: ProcessBuildRunner;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "fizz-build-src-"));
    const config = loadConfig({ FIZZ_WORKDIR: dir });
    runner = new ProcessBuildRunner({
      dir: path.join(dir, "builds"),
      isolation: config.isolation,
      python: config.python,
      runtimesDir: config.runtimesDir,
      go: config.build.go,
      killGraceMs: 500,
      baseEnv: config.instanceEnv,
      logger: silentLogger(),
    });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const build = (name: string, sourceFile: string) =>
    runner.build({
      name,
      environment: environment("nodejs", "fizz/env-node", 0),
      buildCommand: undefined,
      sourceFile,
      outFile: path.join(dir, `${name}.out.tgz`),
      log: new LogTail(),
      signal: new AbortController().signal,
    });

  it("refuses an upload that is no archive as the user's: source archive refused", async () => {
    const file = path.join(dir, "garbage.tgz");
    await writeFile(file, "this is not an archive\n".repeat(20));
    const r = await build("garbage", file);
    expect(r.ok).to.equal(false);
    expect(r.ok === false && r.message).to.match(/^source archive refused: /);
  });

  it("does not call a failure to read the source the user's archive: it throws for the job", async () => {
    // A directory where the file should be: the read fails (EISDIR), as an I/O error would.
    const notAFile = path.join(dir, "a-directory.tgz");
    await mkdir(notAFile);
    let thrown: unknown;
    try {
      const r = await build("unreadable", notAFile);
      expect.fail(`answered ${JSON.stringify(r)}`);
    } catch (err) {
      thrown = err;
    }
    expect(String((thrown as Error).message)).to.not.match(/source archive refused/);
    expect((thrown as NodeJS.ErrnoException).code).to.equal("EISDIR");
  });
});
