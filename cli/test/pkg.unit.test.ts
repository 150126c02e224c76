import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { expect } from "chai";
import { apiError, fizz, pkgObject } from "./support/cli.js";
import { FakeServer, type RecordedRequest } from "./support/fake-server.js";

const NS = "/v1/namespaces/default";
const PACKAGES = `${NS}/packages`;
const SRC_DIGEST = `sha256:${"a".repeat(64)}`;
const DEPLOY_DIGEST = `sha256:${"b".repeat(64)}`;

/** Names of the entries in an uploaded tar.gz (tar headers: name at 0, type flag at 156). */
function tarNames(body: Buffer): string[] {
  const tar = gunzipSync(body);
  const names: string[] = [];
  for (let off = 0; off + 512 <= tar.length;) {
    const header = tar.subarray(off, off + 512);
    const name = header.toString("utf8", 0, 100).replace(/\0.*$/s, "");
    if (name === "") break;
    const size = parseInt(header.toString("utf8", 124, 136).replace(/\0.*$/s, "").trim() || "0", 8);
    names.push(name);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

const SOURCE = { digest: SRC_DIGEST, size: 180, files: 2 };
const DEPLOYMENT = { digest: DEPLOY_DIGEST, size: 2048, files: 30 };
const built = (extra: Record<string, unknown> = {}) =>
  pkgObject(
    "shop",
    { environment: "python", source: SOURCE },
    {
      buildState: "succeeded",
      sourceDigest: SRC_DIGEST,
      deployment: DEPLOYMENT,
      buildLog: "Successfully installed requests\n",
      finishedAt: "2025-01-01T11:59:00Z",
      ...extra,
    },
  );

/** Answers GET package with each state in turn, then keeps answering the last. */
function states(...replies: unknown[]): (req: RecordedRequest) => { json: unknown } {
  let i = 0;
  return () => ({ json: replies[Math.min(i++, replies.length - 1)] });
}

describe("fizz pkg", () => {
  let registry: FakeServer;
  let dir: string;
  let src: string;

  before(async () => {
    registry = await FakeServer.start();
    dir = await mkdtemp(join(tmpdir(), "fizz-cli-pkg-"));
    src = join(dir, "shop");
    await mkdir(join(src, "lib"), { recursive: true });
    await writeFile(join(src, "main.py"), "def main():\n    return 'hi'\n");
    await writeFile(join(src, "requirements.txt"), "requests\n");
    await writeFile(join(src, "lib", "util.py"), "X = 1\n");
  });
  afterEach(() => registry.reset());
  after(async () => {
    await registry.close();
    await rm(dir, { recursive: true, force: true });
  });

  const cli = (...argv: string[]) => fizz(argv, { registry: registry.url });

  describe("create", () => {
    it("packs --src <dir> as tar.gz, creates the package with the returned archive and waits for its build", async () => {
      registry.on("POST", `${NS}/archives?use=source`, { status: 201, json: { archive: SOURCE } });
      registry.on("POST", PACKAGES, {
        status: 201,
        json: pkgObject(
          "shop",
          { environment: "python", source: SOURCE },
          { buildState: "pending" },
        ),
      });
      registry.on(
        "GET",
        `${PACKAGES}/shop`,
        states(
          pkgObject(
            "shop",
            { environment: "python", source: SOURCE },
            {
              buildState: "running",
              sourceDigest: SRC_DIGEST,
            },
          ),
          built(),
        ),
      );

      const result = await cli("pkg", "create", "--name", "shop", "--env", "python", "--src", src);

      expect(result.stderr).to.equal("");
      expect(result.code).to.equal(0);
      expect(registry.calls()).to.deep.equal([
        `POST ${NS}/archives?use=source`,
        `POST ${PACKAGES}`,
        `GET ${PACKAGES}/shop`,
        `GET ${PACKAGES}/shop`,
      ]);
      const upload = registry.requests[0]!;
      expect(upload.headers["content-type"]).to.equal("application/octet-stream");
      expect(tarNames(upload.body).sort()).to.deep.equal([
        "lib/",
        "lib/util.py",
        "main.py",
        "requirements.txt",
      ]);
      expect(registry.jsonBody(1)).to.deep.equal({
        name: "shop",
        spec: { environment: "python", source: SOURCE },
      });
      expect(result.stdout).to.equal(
        'package "shop" created: build succeeded: deployment sha256:bbbbbbbbbbbb (2.0 KiB)\n',
      );
    });

    it("packs a single --src file as an archive holding just that file, with --build-cmd", async () => {
      registry.on("POST", `${NS}/archives?use=source`, { status: 201, json: { archive: SOURCE } });
      registry.on("POST", PACKAGES, { status: 201, json: built() });

      const result = await cli(
        "pkg",
        "create",
        "--name",
        "shop",
        "--env",
        "python",
        "--src",
        join(src, "main.py"),
        "--build-cmd",
        "./build.sh",
        "--no-wait",
      );

      expect(result.code).to.equal(0);
      expect(tarNames(registry.requests[0]!.body)).to.deep.equal(["main.py"]);
      expect(registry.jsonBody(1)).to.deep.equal({
        name: "shop",
        spec: { environment: "python", source: SOURCE, buildCommand: "./build.sh" },
      });
      expect(registry.calls()).to.have.length(2);
    });

    it("sends an existing --deploy archive byte for byte and waits until that deployment is live", async () => {
      const zip = join(dir, "web.zip");
      const bytes = Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.alloc(100, 7)]);
      await writeFile(zip, bytes);
      registry.on("POST", `${NS}/archives?use=deployment`, {
        status: 201,
        json: { archive: DEPLOYMENT },
      });
      registry.on("POST", PACKAGES, {
        status: 201,
        json: pkgObject(
          "web",
          { environment: "node", deployment: DEPLOYMENT },
          { buildState: "pending" },
        ),
      });
      registry.on(
        "GET",
        `${PACKAGES}/web`,
        states(
          pkgObject(
            "web",
            { environment: "node", deployment: DEPLOYMENT },
            {
              buildState: "succeeded",
              deployment: DEPLOYMENT,
            },
          ),
        ),
      );

      const result = await cli("pkg", "create", "--name", "web", "--env", "node", "--deploy", zip);

      expect(result.code).to.equal(0);
      expect(registry.requests[0]!.body.equals(bytes)).to.equal(true);
      expect(registry.jsonBody(1)).to.deep.equal({
        name: "web",
        spec: { environment: "node", deployment: DEPLOYMENT },
      });
      expect(result.stdout).to.equal(
        'package "web" created: deployment sha256:bbbbbbbbbbbb (2.0 KiB)\n',
      );
    });

    it("on a failed build prints the message and the log's last 30 lines to stderr and exits 1", async () => {
      const log = Array.from({ length: 50 }, (_, i) => `pip line ${i}`).join("\n");
      registry.on("POST", `${NS}/archives?use=source`, { status: 201, json: { archive: SOURCE } });
      registry.on("POST", PACKAGES, { status: 201, json: built({ buildState: "pending" }) });
      registry.on(
        "GET",
        `${PACKAGES}/shop`,
        states(
          pkgObject(
            "shop",
            { environment: "python", source: SOURCE },
            {
              buildState: "failed",
              sourceDigest: SRC_DIGEST,
              buildLog: log,
              message: "build command exited with status 1",
            },
          ),
        ),
      );

      const result = await cli("pkg", "create", "--name", "shop", "--env", "python", "--src", src);

      expect(result.code).to.equal(1);
      expect(result.stdout).to.equal("");
      expect(result.stderr).to.include("pip line 20\n");
      expect(result.stderr).to.include("pip line 49\n");
      expect(result.stderr).not.to.include("pip line 19\n");
      expect(result.stderr).to.include(
        'Error: the build of package "shop" failed: build command exited with status 1\n',
      );
      expect(result.stderr).to.include("fizz pkg info --name shop");
    });

    it("does not take a state about an older source for the build it waits for", async () => {
      const older = `sha256:${"9".repeat(64)}`;
      registry.on("POST", `${NS}/archives?use=source`, { status: 201, json: { archive: SOURCE } });
      registry.on("POST", PACKAGES, { status: 201, json: built({ buildState: "pending" }) });
      registry.on(
        "GET",
        `${PACKAGES}/shop`,
        states(built({ buildState: "failed", sourceDigest: older, message: "old" }), built()),
      );

      const result = await cli("pkg", "create", "--name", "shop", "--env", "python", "--src", src);

      expect(result.code).to.equal(0);
      expect(registry.calls().filter((c) => c.startsWith("GET"))).to.have.length(2);
    });

    it("gives up after --wait-timeout, saying the build goes on", async () => {
      registry.on("POST", `${NS}/archives?use=source`, { status: 201, json: { archive: SOURCE } });
      registry.on("POST", PACKAGES, { status: 201, json: built({ buildState: "pending" }) });
      registry.on("GET", `${PACKAGES}/shop`, { json: built({ buildState: "running" }) });

      const result = await cli(
        "pkg",
        "create",
        "--name",
        "shop",
        "--env",
        "python",
        "--src",
        src,
        "--wait-timeout",
        "0.6",
      );

      expect(result.code).to.equal(1);
      expect(result.stderr).to.include('Error: package "shop" is still running after 0.6s\n');
      expect(result.stderr).to.include(
        "The build goes on; follow it with: fizz pkg info --name shop",
      );
    });

    it("skips a link pointing outside the directory, naming it, and keeps one inside", async () => {
      const linked = join(dir, "linked");
      await mkdir(linked);
      await writeFile(join(linked, "index.js"), "module.exports = 1;\n");
      await symlink("/etc/passwd", join(linked, "escape"));
      await symlink("index.js", join(linked, "alias.js"));
      registry.on("POST", `${NS}/archives?use=deployment`, {
        status: 201,
        json: { archive: DEPLOYMENT },
      });
      registry.on("POST", PACKAGES, { status: 201, json: built() });

      const result = await cli(
        "pkg",
        "create",
        "--name",
        "web",
        "--env",
        "node",
        "--deploy",
        linked,
        "--no-wait",
      );

      expect(result.code).to.equal(0);
      expect(tarNames(registry.requests[0]!.body).sort()).to.deep.equal(["alias.js", "index.js"]);
      expect(result.stderr).to.equal(
        "warning: --deploy: skipped escape: link to /etc/passwd points outside the directory\n",
      );
    });

    it("shows the registry's refusal of an archive as is", async () => {
      registry.on("POST", `${NS}/archives?use=source`, {
        status: 400,
        json: apiError("ARCHIVE_UNSAFE", "entry ../x escapes the archive"),
      });

      const result = await cli("pkg", "create", "--name", "shop", "--env", "python", "--src", src);

      expect(result.code).to.equal(1);
      expect(result.stderr).to.equal("Error: entry ../x escapes the archive (ARCHIVE_UNSAFE)\n");
      expect(registry.calls()).to.deep.equal([`POST ${NS}/archives?use=source`]);
    });

    for (const [argv, message] of [
      [["--src", "a", "--deploy", "b"], "--src and --deploy exclude each other"],
      [[], "give --src <dir|archive|file> (built) or --deploy <dir|archive> (used as is)"],
      [["--deploy", "b", "--build-cmd", "make"], "--build-cmd needs --src"],
    ] as const) {
      it(`refuses ${argv.join(" ") || "no archive flag"} before sending anything`, async () => {
        const result = await cli("pkg", "create", "--name", "x", "--env", "node", ...argv);

        expect(result.code).to.equal(2);
        expect(result.stderr).to.include(message);
        expect(registry.requests).to.have.length(0);
      });
    }

    it("names the flag and the path when --src does not exist", async () => {
      const missing = join(dir, "nope");
      const result = await cli("pkg", "create", "--name", "x", "--env", "node", "--src", missing);

      expect(result.code).to.equal(1);
      expect(result.stderr).to.equal(
        `Error: cannot read --src "${missing}": no such file or directory\n`,
      );
      expect(registry.requests).to.have.length(0);
    });

    it("refuses an empty --src directory", async () => {
      const empty = join(dir, "empty");
      await mkdir(empty, { recursive: true });
      const result = await cli("pkg", "create", "--name", "x", "--env", "node", "--src", empty);

      expect(result.code).to.equal(1);
      expect(result.stderr).to.equal(`Error: --src "${empty}" is an empty directory\n`);
    });
  });

  describe("info and list", () => {
    it("info shows environment, archives, build state, message and the build log", async () => {
      registry.on("GET", `${PACKAGES}/shop`, {
        json: built({
          buildState: "failed",
          message: "exit 1",
          buildLog: "Collecting x\nERROR: no\n",
        }),
      });

      const result = await cli("pkg", "info", "--name", "shop");

      expect(result.code).to.equal(0);
      const out = result.stdout;
      expect(out).to.match(/Environment:\s+python\n/);
      expect(out).to.include(`Source:`);
      expect(out).to.include(`${SRC_DIGEST} (180 B, 2 files)`);
      expect(out).to.match(/Build state:\s+failed\n/);
      expect(out).to.match(/Message:\s+exit 1\n/);
      expect(out).to.include(`${DEPLOY_DIGEST} (2.0 KiB, 30 files)`);
      expect(out).to.match(/\nBuild log:\nCollecting x\nERROR: no\n$/);
    });

    it("list shows one row per package", async () => {
      registry.on("GET", `${PACKAGES}?limit=500`, {
        json: {
          items: [
            built(),
            pkgObject(
              "web",
              { environment: "node", deployment: DEPLOYMENT },
              {
                buildState: "succeeded",
                deployment: DEPLOYMENT,
              },
            ),
          ],
        },
      });

      const result = await cli("pkg", "list");

      expect(result.stdout.split("\n")).to.deep.equal([
        "NAME   ENV      BUILD       SOURCE   DEPLOYMENT   REVISION   AGE",
        "shop   python   succeeded   180 B    2.0 KiB      1          5m",
        "web    node     (none)      -        2.0 KiB      1          5m",
        "",
      ]);
    });
  });

  describe("update, rebuild, delete", () => {
    it("update --src uploads, unsets a deployment and waits for the new source's build", async () => {
      registry.on("GET", `${PACKAGES}/shop`, states(built(), built()));
      registry.on("POST", `${NS}/archives?use=source`, { status: 201, json: { archive: SOURCE } });
      registry.on("PATCH", `${PACKAGES}/shop`, { json: built({ buildState: "pending" }) });

      const result = await cli("pkg", "update", "--name", "shop", "--src", src);

      expect(result.code).to.equal(0);
      expect(registry.jsonBody(2)).to.deep.equal({ spec: { source: SOURCE, deployment: null } });
    });

    it("update --deploy unsets source and build command", async () => {
      registry.on("GET", `${PACKAGES}/shop`, {
        json: pkgObject(
          "shop",
          { environment: "python", deployment: DEPLOYMENT },
          {
            buildState: "succeeded",
            deployment: DEPLOYMENT,
          },
        ),
      });
      registry.on("POST", `${NS}/archives?use=deployment`, {
        status: 201,
        json: { archive: DEPLOYMENT },
      });
      registry.on("PATCH", `${PACKAGES}/shop`, { json: built() });

      const result = await cli("pkg", "update", "--name", "shop", "--deploy", src);

      expect(result.code).to.equal(0);
      expect(registry.jsonBody(2)).to.deep.equal({
        spec: { deployment: DEPLOYMENT, source: null, buildCommand: null },
      });
    });

    it("rebuild waits for a build that finished after the one it replaced", async () => {
      registry.on("POST", `${PACKAGES}/shop/rebuild`, {
        status: 202,
        json: { package: built({ buildState: "pending" }) },
      });
      registry.on(
        "GET",
        `${PACKAGES}/shop`,
        states(built({ buildState: "running" }), built({ finishedAt: "2025-01-01T12:00:05Z" })),
      );

      const result = await cli("pkg", "rebuild", "--name", "shop");

      expect(result.code).to.equal(0);
      expect(registry.calls()).to.deep.equal([
        `POST ${PACKAGES}/shop/rebuild`,
        `GET ${PACKAGES}/shop`,
        `GET ${PACKAGES}/shop`,
      ]);
      expect(result.stdout).to.include('package "shop" rebuild started: build succeeded');
    });

    it("delete refused while functions use the package says what to do", async () => {
      registry.on("DELETE", `${PACKAGES}/shop`, {
        status: 409,
        json: apiError("IN_USE", 'package "shop" is used by function "orders"'),
      });

      const result = await cli("pkg", "delete", "--name", "shop");

      expect(result.code).to.equal(1);
      expect(result.stderr).to.include("(IN_USE)\nDelete the functions named above");
    });
  });

  describe("getsrc and getdeploy", () => {
    it("stream the archive into the -o file", async () => {
      const bytes = Buffer.alloc(300_000, 3);
      registry.on("GET", `${PACKAGES}/shop/deployment`, {
        body: bytes,
        headers: { "content-type": "application/gzip" },
      });
      const out = join(dir, "deploy.tar.gz");

      const result = await cli("pkg", "getdeploy", "--name", "shop", "-o", out);

      expect(result.stderr).to.equal("");
      expect(result.code).to.equal(0);
      expect((await readFile(out)).equals(bytes)).to.equal(true);
      expect(result.stdout).to.equal(
        `deployment of package "shop" written to ${out} (293.0 KiB)\n`,
      );
    });

    it("without -o is a usage error; an error answer leaves no file", async () => {
      const noFile = await cli("pkg", "getsrc", "--name", "shop");
      expect(noFile.code).to.equal(2);
      expect(noFile.stderr).to.include("give the file to write with -o <file>");

      registry.on("GET", `${PACKAGES}/shop/source`, {
        status: 404,
        json: apiError("NOT_FOUND", 'package "shop" not found'),
      });
      const out = join(dir, "missing.tar.gz");
      const result = await cli("pkg", "getsrc", "--name", "shop", "-o", out);
      expect(result.code).to.equal(1);
      expect(result.stderr).to.equal('Error: package "shop" not found (NOT_FOUND)\n');
      await readFile(out).then(
        () => expect.fail("a file was written"),
        () => undefined,
      );
    });

    it("other commands still refuse an -o that is not a format", async () => {
      const result = await cli("pkg", "list", "-o", "yaml");

      expect(result.code).to.equal(2);
      expect(result.stderr).to.include(
        "argument 'yaml' is invalid. Allowed choices are table, json.",
      );
    });
  });
});
