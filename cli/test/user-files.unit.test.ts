import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { fizz } from "./support/cli.js";
import { FakeServer } from "./support/fake-server.js";

/**
 * Every option that reads a file refuses what is not a regular file, or is over the limit,
 * before reading it: `--code /dev/zero` used to read until memory ran out.
 */
describe("fizz reading user files", function () {
  this.timeout(10_000);
  let registry: FakeServer;
  let gateway: FakeServer;
  let dir: string;
  let fifo: string;
  let big: string;

  before(async () => {
    registry = await FakeServer.start();
    gateway = await FakeServer.start();
    dir = await mkdtemp(join(tmpdir(), "fizz-files-"));
    fifo = join(dir, "pipe");
    // A FIFO nobody writes to: reading it would block forever.
    execFileSync("mkfifo", [fifo]);
    big = join(dir, "big.mjs");
    await writeFile(big, Buffer.alloc(2048, "a"));
  });
  afterEach(() => {
    registry.reset();
    gateway.reset();
  });
  after(async () => {
    await Promise.all([registry.close(), gateway.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  const run = (argv: string[], env: Record<string, string> = {}) =>
    fizz(argv, { registry: registry.url, gateway: gateway.url }, { env });
  const create = (code: string, env: Record<string, string> = {}) =>
    run(["fn", "create", "--name", "f", "--env", "node", "--code", code], env);

  for (const [what, path, kind] of [
    ["/dev/zero", "/dev/zero", "a character device"],
    ["a FIFO", "", "a FIFO"],
    ["a directory", "", "a directory"],
  ] as const) {
    it(`refuses --code pointing at ${what}, naming the flag, without sending anything`, async () => {
      const target = path || (kind === "a FIFO" ? fifo : dir);
      const result = await create(target);
      expect(result.code).to.equal(1);
      expect(result.stderr).to.equal(`Error: --code "${target}" is ${kind}, not a regular file\n`);
      expect(registry.requests).to.have.length(0);
    });
  }

  it("refuses --code over FIZZ_CODE_MAX_BYTES before reading it", async () => {
    const result = await create(big, { FIZZ_CODE_MAX_BYTES: "1024" });
    expect(result.code).to.equal(1);
    expect(result.stderr).to.equal(
      `Error: --code "${big}" is 2048 bytes, over the limit of 1024 bytes (FIZZ_CODE_MAX_BYTES)\n`,
    );
    expect(registry.requests).to.have.length(0);
  });

  it("refuses a regular file that claims size 0 but keeps going (/proc)", async () => {
    const result = await create("/proc/self/maps", { FIZZ_CODE_MAX_BYTES: "16" });
    expect(result.code).to.equal(1);
    expect(result.stderr).to.match(/--code "\/proc\/self\/maps" is more than 16 bytes/);
    expect(registry.requests).to.have.length(0);
  });

  it("refuses fn update --code /dev/zero as well", async () => {
    const result = await run(["fn", "update", "--name", "f", "--code", "/dev/zero"]);
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include('--code "/dev/zero" is a character device');
    expect(registry.requests).to.have.length(0);
  });

  it("refuses fn test --body @/dev/zero and timer --body @FIFO, naming --body", async () => {
    const test = await run(["fn", "test", "--name", "f", "--body", "@/dev/zero"]);
    expect(test.code).to.equal(1);
    expect(test.stderr).to.include('--body "/dev/zero" is a character device');
    const timer = await run([
      "timer",
      "create",
      "--name",
      "t",
      "--function",
      "f",
      "--cron",
      "@every 5m",
      "--body",
      `@${fifo}`,
    ]);
    expect(timer.code).to.equal(1);
    expect(timer.stderr).to.include(`--body "${fifo}" is a FIFO`);
    expect(gateway.requests).to.have.length(0);
    expect(registry.requests).to.have.length(0);
  });

  it("refuses --body @file over FIZZ_MAX_BODY_BYTES", async () => {
    const result = await run(["fn", "test", "--name", "f", "--body", `@${big}`], {
      FIZZ_MAX_BODY_BYTES: "100",
    });
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include("over the limit of 100 bytes (FIZZ_MAX_BODY_BYTES)");
    expect(gateway.requests).to.have.length(0);
  });

  it("says which variable is wrong when a limit is not a number", async () => {
    const result = await create(big, { FIZZ_CODE_MAX_BYTES: "lots" });
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include(
      'FIZZ_CODE_MAX_BYTES must be a positive number of bytes, got "lots"',
    );
  });
});
