/**
 * The package, secret and configmap commands against a real registry (with real nats-server and
 * redis-server): uploads are canonicalized and stored, deployments go live, a function follows
 * its package, secret values never come back, and an unsafe archive is refused. No builder runs
 * here (the poolkeeper builds; test/e2e covers real builds), so a source build stays pending.
 */
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { expect } from "chai";
import { silentLogger } from "@fizz/kit";
import { loadConfig, start, type RegistryService } from "@fizz/registry";
import { startNats, startRedis, waitFor, type TestServer } from "@fizz/testkit";
import { fizz } from "./support/cli.js";

const TOKEN = "cli-int-admin-token-0123456789abcdef";

/** Entry names of a tar.gz (name at 0, size at 124 of each 512-byte header). */
function tarNames(gz: Buffer): string[] {
  const tar = gunzipSync(gz);
  const names: string[] = [];
  for (let off = 0; off + 512 <= tar.length;) {
    const name = tar.toString("utf8", off, off + 100).replace(/\0.*$/s, "");
    if (name === "") break;
    const size = parseInt(
      tar.toString("utf8", off + 124, off + 136).replace(/\0.*$/s, "") || "0",
      8,
    );
    names.push(name);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

/** A tar.gz with one regular file whose name climbs out of the extraction dir. */
function escapingArchive(): Buffer {
  const data = Buffer.from("owned\n");
  const header = Buffer.alloc(512);
  header.write("../escaped.txt", 0);
  header.write("0000644\0", 100);
  header.write("0000000\0", 108);
  header.write("0000000\0", 116);
  header.write(`${data.length.toString(8).padStart(11, "0")}\0`, 124);
  header.write("00000000000\0", 136);
  header.write("0", 156);
  header.write("ustar\0", 257);
  header.write("00", 263);
  header.fill(" ", 148, 156);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  const body = Buffer.concat([data, Buffer.alloc(512 - data.length)]);
  return gzipSync(Buffer.concat([header, body, Buffer.alloc(1024)]));
}

describe("fizz against a real registry: packages, secrets, configmaps", function () {
  this.timeout(60_000);
  let nats: TestServer;
  let redis: TestServer;
  let registry: RegistryService;
  let dir: string;
  let url: string;

  before(async () => {
    [nats, redis] = await Promise.all([startNats(), startRedis()]);
    dir = await mkdtemp(join(tmpdir(), "fizz-cli-int-"));
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
    const env = await cli("env", "create", "--name", "python", "--image", "fizz/env-python");
    expect(env.code, env.stderr).to.equal(0);
  });
  after(async () => {
    await registry?.stop();
    await Promise.all([nats?.cleanup(), redis?.cleanup()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const cli = (...argv: string[]) => fizz(argv, { registry: url }, { env: { FIZZ_TOKEN: TOKEN } });

  async function tree(name: string, files: Record<string, string>): Promise<string> {
    const root = join(dir, name);
    for (const [rel, content] of Object.entries(files)) {
      await mkdir(join(root, rel, ".."), { recursive: true });
      await writeFile(join(root, rel), content);
    }
    return root;
  }

  it("pkg create --deploy <dir> goes live at once; getdeploy returns the stored archive", async () => {
    const app = await tree("app-v1", {
      "main.py": "def main(context):\n    return 'v1'\n",
      "lib/helper.py": "X = 1\n",
    });

    const created = await cli("pkg", "create", "--name", "app", "--env", "python", "--deploy", app);

    expect(created.stderr).to.equal("");
    expect(created.code).to.equal(0);
    expect(created.stdout).to.match(/^package "app" created: deployment sha256:[0-9a-f]{12} \(/);

    const out = join(dir, "app.tar.gz");
    const got = await cli("pkg", "getdeploy", "--name", "app", "-o", out);
    expect(got.code, got.stderr).to.equal(0);
    const names = tarNames(await readFile(out)).map((n) => n.replace(/^\.\//, ""));
    expect(names).to.include.members(["main.py", "lib/helper.py"]);

    const info = await cli("pkg", "info", "--name", "app");
    expect(info.stdout).to.match(/Deployment:\s+sha256:[0-9a-f]{64} \(/);
    const list = await cli("pkg", "list");
    expect(list.stdout).to.match(/\napp\s+python\s+\(none\)\s+-\s+\S+ \S+\s+1\s+\d+s\n/);
  });

  it("fn create --pkg and fn update --deploy: the function follows its package's new deployment", async () => {
    const made = await cli(
      "fn",
      "create",
      "--name",
      "hello",
      "--env",
      "python",
      "--pkg",
      "app",
      "--env-var",
      "MODE=test",
      "--entrypoint",
      "main.main",
    );
    expect(made.code, made.stderr).to.equal(0);
    const before = JSON.parse((await cli("fn", "get", "--name", "hello", "-o", "json")).stdout) as {
      metadata: { revision: number };
      spec: { package: { deployment: { digest: string } }; env: Record<string, string> };
    };
    expect(before.spec.env).to.deep.equal({ MODE: "test" });

    const v2 = await tree("app-v2", { "main.py": "def main(context):\n    return 'v2'\n" });
    const updated = await cli("fn", "update", "--name", "hello", "--deploy", v2);

    expect(updated.code, updated.stderr).to.equal(0);
    const after = JSON.parse(
      (await cli("fn", "get", "--name", "hello", "-o", "json")).stdout,
    ) as typeof before;
    expect(after.spec.package.deployment.digest).not.to.equal(
      before.spec.package.deployment.digest,
    );
    expect(after.metadata.revision).to.be.greaterThan(before.metadata.revision);
    const pkg = JSON.parse((await cli("pkg", "info", "--name", "app", "-o", "json")).stdout) as {
      status: { deployment: { digest: string } };
    };
    expect(pkg.status.deployment.digest).to.equal(after.spec.package.deployment.digest);
  });

  it("fn create --src without a builder times out, creates no function and removes its package", async () => {
    const src = await tree("unbuilt", { "main.py": "def main(context):\n    return 'x'\n" });

    const r = await cli(
      "fn",
      "create",
      "--name",
      "unbuilt",
      "--env",
      "python",
      "--src",
      src,
      "--wait-timeout",
      "1",
    );

    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/package "unbuilt" is still (pending|running) after 1s/);
    expect(r.stderr).to.include(
      'The function was not created, and package "unbuilt" was removed again.',
    );
    expect((await cli("fn", "get", "--name", "unbuilt")).stderr).to.include("NOT_FOUND");
    expect((await cli("pkg", "info", "--name", "unbuilt")).stderr).to.include("NOT_FOUND");
  });

  it("fn create --code hello.go for a go environment deploys the file as a one-file source package, saying so in one line", async () => {
    const env = await cli(
      "env",
      "create",
      "--name",
      "go",
      "--image",
      "fizz/env-go",
      "--poolsize",
      "0",
    );
    expect(env.code, env.stderr).to.equal(0);
    const src = await tree("gohello", { "hello.go": "package main\n\nfunc Handler() {}\n" });

    const r = await cli(
      "fn",
      "create",
      "--name",
      "gohello",
      "--env",
      "go",
      "--code",
      join(src, "hello.go"),
      "--wait-timeout",
      "1",
    );

    const said = r.stderr.split("\n").filter((l) => l.includes("one-file source package"));
    expect(said).to.deep.equal([
      `fizz: environment "go" runs go, which is compiled: deploying ${join(src, "hello.go")} as a one-file source package (--src ${join(src, "hello.go")})`,
    ]);
    // No builder here: the package's build stays pending, as with --src (covered above).
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/package "gohello" is still (pending|running) after 1s/);
    expect(r.stderr).to.not.include("VALIDATION_FAILED");
  });

  it("env create --builder names the builder image (Fission's flag); env update --builder keeps the builder's other settings", async () => {
    const c = await cli(
      "env",
      "create",
      "--name",
      "gob",
      "--image",
      "fizz/env-go",
      "--builder",
      "fizz/builder-go",
      "--poolsize",
      "0",
    );
    expect(c.code, c.stderr).to.equal(0);
    const got = JSON.parse((await cli("env", "get", "--name", "gob", "-o", "json")).stdout) as {
      spec: { builder?: { image?: string; timeoutSeconds?: number } };
    };
    expect(got.spec.builder).to.include({ image: "fizz/builder-go", timeoutSeconds: 300 });
    const u = await cli("env", "update", "--name", "gob", "--builder", "acme/builder-go:2");
    expect(u.code, u.stderr).to.equal(0);
    const after = JSON.parse((await cli("env", "get", "--name", "gob", "-o", "json")).stdout) as {
      spec: { builder?: { image?: string } };
    };
    expect(after.spec.builder?.image).to.equal("acme/builder-go:2");
    expect((await cli("env", "get", "--name", "gob")).stdout).to.match(
      /Builder:\s+acme\/builder-go:2/,
    );
  });

  it("fn create --code for a python environment still sends the single file (no extra request, no package)", async () => {
    const src = await tree("pyhello", { "hello.py": "def main():\n    return 'hi'\n" });
    const r = await cli(
      "fn",
      "create",
      "--name",
      "pyhello",
      "--env",
      "python",
      "--code",
      join(src, "hello.py"),
    );
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.equal("");
    expect((await cli("pkg", "info", "--name", "pyhello")).stderr).to.include("NOT_FOUND");
  });

  it("pkg create --src --no-wait leaves the build pending and says how to follow it", async () => {
    const src = await tree("later", { "main.py": "def main(context):\n    return 'x'\n" });

    const r = await cli(
      "pkg",
      "create",
      "--name",
      "later",
      "--env",
      "python",
      "--src",
      src,
      "--no-wait",
    );

    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(
      /build (pending|running) \(follow it with: fizz pkg info --name later\)/,
    );
    const info = await cli("pkg", "info", "--name", "later");
    expect(info.stdout).to.match(/Build state:\s+(pending|running)\n/);
  });

  it("an archive with a path escaping its root is refused by the registry (ARCHIVE_UNSAFE)", async () => {
    const evil = join(dir, "evil.tar.gz");
    await writeFile(evil, escapingArchive());

    const r = await cli("pkg", "create", "--name", "evil", "--env", "python", "--deploy", evil);

    expect(r.code).to.equal(1);
    expect(r.stderr).to.include("(ARCHIVE_UNSAFE)");
    expect((await cli("pkg", "info", "--name", "evil")).stderr).to.include("NOT_FOUND");
  });

  it("secret values go in and never come out; configmap values do", async () => {
    const value = `pw-${randomBytes(8).toString("hex")}`;
    const file = join(dir, "token.txt");
    await writeFile(file, `tok-${value}`);

    const created = await cli(
      "secret",
      "create",
      "--name",
      "db",
      "--from-literal",
      `password=${value}`,
      "--from-file",
      `token=${file}`,
    );
    expect(created.code, created.stderr).to.equal(0);

    const outputs = [
      created,
      await cli("secret", "get", "--name", "db"),
      await cli("secret", "get", "--name", "db", "-o", "json"),
      await cli("secret", "list", "-o", "json"),
      await cli(
        "secret",
        "update",
        "--name",
        "db",
        "--from-literal",
        `password=${value}`,
        "-o",
        "json",
      ),
    ];
    for (const o of outputs) {
      expect(o.code, o.stderr).to.equal(0);
      expect(o.stdout + o.stderr).not.to.include(value);
      expect(o.stdout + o.stderr).not.to.include(Buffer.from(value).toString("base64"));
    }
    expect(outputs[1]!.stdout).to.match(/Keys:\s+password, token\n/);

    const cm = await cli(
      "configmap",
      "create",
      "--name",
      "settings",
      "--from-literal",
      "mode=fast",
    );
    expect(cm.code, cm.stderr).to.equal(0);
    const shown = await cli("configmap", "get", "--name", "settings");
    expect(shown.stdout).to.include("--- mode ---\nfast\n");

    const fn = await cli(
      "fn",
      "update",
      "--name",
      "hello",
      "--secret",
      "db",
      "--configmap",
      "settings",
    );
    expect(fn.code, fn.stderr).to.equal(0);
    const wired = await cli("fn", "get", "--name", "hello");
    expect(wired.stdout).to.match(/Secrets:\s+db\n/);
    expect(wired.stdout).to.match(/ConfigMaps:\s+settings\n/);
  });
});
