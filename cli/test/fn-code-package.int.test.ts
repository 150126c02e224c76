/**
 * `fn update --code hello.go` for a compiled environment, against a real registry: the file is
 * built into the package named after the function, never into the package it runs now (which
 * other functions may share), and what would be refused is refused before anything is written.
 * No builder runs here, so a new source build stays pending and the command times out.
 */
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { silentLogger } from "@fizz/kit";
import { loadConfig, start, type RegistryService } from "@fizz/registry";
import { startNats, startRedis, waitFor, type TestServer } from "@fizz/testkit";
import { fizz } from "./support/cli.js";

const TOKEN = "cli-int-admin-token-0123456789abcdef";

interface Obj {
  metadata: { revision: number };
  spec: { environment: string; package?: { name: string }; source?: unknown };
}

describe("fizz fn update --code for a compiled environment, against a real registry", function () {
  this.timeout(60_000);
  let nats: TestServer;
  let redis: TestServer;
  let registry: RegistryService;
  let dir: string;
  let url: string;
  let goFile: string;
  let deployDir: string;

  const cli = (...argv: string[]) => fizz(argv, { registry: url }, { env: { FIZZ_TOKEN: TOKEN } });
  const ok = async (...argv: string[]) => {
    const r = await cli(...argv);
    expect(r.code, `${argv.join(" ")}: ${r.stderr}`).to.equal(0);
    return r;
  };
  const getJson = async (kind: "fn" | "pkg", name: string): Promise<Obj> => {
    const r = await ok(kind, kind === "fn" ? "get" : "info", "--name", name, "-o", "json");
    return JSON.parse(r.stdout) as Obj;
  };

  before(async () => {
    [nats, redis] = await Promise.all([startNats(), startRedis()]);
    dir = await mkdtemp(join(tmpdir(), "fizz-cli-codepkg-"));
    const keyFile = join(dir, "secrets.key");
    await writeFile(keyFile, randomBytes(32), { mode: 0o600 });
    await mkdir(join(dir, "work"));
    registry = await start(
      loadConfig({
        FIZZ_NATS_URL: nats.url,
        FIZZ_REDIS_URL: redis.url,
        FIZZ_REGISTRY_PORT: "0",
        FIZZ_LOG_LEVEL: "silent",
        FIZZ_ADMIN_TOKEN: TOKEN,
        FIZZ_READ_TOKEN: "cli-int-read-token-0123456789abcdef",
        FIZZ_SECRETS_KEY_FILE: keyFile,
        FIZZ_REGISTRY_WORKDIR: join(dir, "work"),
        FIZZ_SYNC_TIMEOUT_MS: "200",
      }),
      { logger: silentLogger() },
    );
    url = `http://127.0.0.1:${registry.port}`;
    await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, {
      what: "registry ready",
    });
    await ok("env", "create", "--name", "go", "--image", "fizz/env-go", "--poolsize", "0");
    await ok("env", "create", "--name", "python", "--image", "fizz/env-python", "--poolsize", "0");
    goFile = join(dir, "x.go");
    await writeFile(goFile, "package main\n\nfunc Handler() {}\n");
    deployDir = join(dir, "deploy");
    await mkdir(deployDir);
    await writeFile(join(deployDir, "main.py"), "def main(context):\n    return 'v1'\n");
  });
  after(async () => {
    await registry?.stop();
    await Promise.all([nats?.cleanup(), redis?.cleanup()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("builds the file into a package named after the function and leaves the shared package it ran, and the other function on it, untouched", async () => {
    await ok("pkg", "create", "--name", "lib", "--env", "go", "--deploy", deployDir);
    await ok("fn", "create", "--name", "a", "--env", "go", "--pkg", "lib");
    await ok("fn", "create", "--name", "b", "--env", "go", "--pkg", "lib");
    const libBefore = await getJson("pkg", "lib");

    const r = await cli("fn", "update", "--name", "a", "--code", goFile, "--wait-timeout", "1");

    // The build of package "a" stays pending (no builder): the command gives up and cleans up.
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/package "a" is still (pending|running) after 1s/);
    expect(r.stderr).to.include('Function "a" was not changed. Package "a" was removed again.');
    expect(await getJson("pkg", "lib")).to.deep.equal(libBefore);
    expect((await getJson("fn", "a")).spec.package?.name).to.equal("lib");
    expect((await getJson("fn", "b")).spec.package?.name).to.equal("lib");
    expect((await cli("pkg", "info", "--name", "a")).stderr).to.include("NOT_FOUND");
  });

  it("refuses, changing nothing, when the package named after the function is used by another function", async () => {
    await ok("pkg", "create", "--name", "x", "--env", "go", "--deploy", deployDir);
    await ok("fn", "create", "--name", "y", "--env", "go", "--pkg", "x");
    await ok("fn", "create", "--name", "x", "--env", "go", "--pkg", "lib");
    const pkgBefore = await getJson("pkg", "x");
    const fnBefore = await getJson("fn", "x");

    const r = await cli("fn", "update", "--name", "x", "--code", goFile, "--wait-timeout", "1");

    expect(r.code).to.equal(1);
    expect(r.stderr).to.include(
      'package "x", which --code would build for function "x", is used by function "y"',
    );
    expect(r.stderr).to.include("Nothing was changed.");
    expect(r.stderr).to.include("fizz fn update --name x --pkg x-src");
    expect(await getJson("pkg", "x")).to.deep.equal(pkgBefore);
    expect(await getJson("fn", "x")).to.deep.equal(fnBefore);
  });

  it("with --env go on a function whose own package is built for python, refuses before writing anything", async () => {
    await ok("pkg", "create", "--name", "p", "--env", "python", "--deploy", deployDir);
    await ok("fn", "create", "--name", "p", "--env", "python", "--pkg", "p");
    const pkgBefore = await getJson("pkg", "p");
    const fnBefore = await getJson("fn", "p");

    const r = await cli("fn", "update", "--name", "p", "--env", "go", "--code", goFile);

    expect(r.code).to.equal(1);
    expect(r.stderr).to.include(
      'package "p" is built for environment "python", and function "p" runs it there, so it cannot be rebuilt for "go"',
    );
    expect(r.stderr).to.include("fizz fn update --name p --env go --pkg p-go");
    expect(await getJson("pkg", "p")).to.deep.equal(pkgBefore);
    expect(await getJson("fn", "p")).to.deep.equal(fnBefore);
  });

  it("with --env go on a function running another python package, leaves that package alone and builds its own", async () => {
    await ok("pkg", "create", "--name", "pylib", "--env", "python", "--deploy", deployDir);
    await ok("fn", "create", "--name", "q", "--env", "python", "--pkg", "pylib");
    const libBefore = await getJson("pkg", "pylib");

    const r = await cli(
      "fn",
      "update",
      "--name",
      "q",
      "--env",
      "go",
      "--code",
      goFile,
      "--wait-timeout",
      "1",
    );

    expect(r.stderr).to.match(/package "q" is still (pending|running) after 1s/);
    expect(r.code).to.equal(1);
    expect(await getJson("pkg", "pylib")).to.deep.equal(libBefore);
    expect((await getJson("fn", "q")).spec.environment).to.equal("python");
  });
});
