import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { apiError, apiObject, fizz, pkgObject } from "./support/cli.js";
import { FakeServer, type RecordedRequest } from "./support/fake-server.js";

const NS = "/v1/namespaces/default";
const FUNCTIONS = `${NS}/functions`;
const PACKAGES = `${NS}/packages`;
const SOURCE = { digest: `sha256:${"a".repeat(64)}`, size: 180 };
const DEPLOYMENT = { digest: `sha256:${"b".repeat(64)}`, size: 2048 };

const pkg = (name: string, status: Record<string, unknown>) =>
  pkgObject(
    name,
    { environment: "python", source: SOURCE },
    {
      sourceDigest: SOURCE.digest,
      ...status,
    },
  );

function states(...replies: unknown[]): (req: RecordedRequest) => { json: unknown } {
  let i = 0;
  return () => ({ json: replies[Math.min(i++, replies.length - 1)] });
}

describe("fizz fn with packages, env vars, secrets and configmaps", () => {
  let registry: FakeServer;
  let dir: string;
  let src: string;

  before(async () => {
    registry = await FakeServer.start();
    dir = await mkdtemp(join(tmpdir(), "fizz-cli-fnpkg-"));
    src = join(dir, "shop");
    await mkdir(src);
    await writeFile(join(src, "main.py"), "def main():\n    return 'hi'\n");
  });
  afterEach(() => registry.reset());
  after(async () => {
    await registry.close();
    await rm(dir, { recursive: true, force: true });
  });

  const cli = (...argv: string[]) => fizz(argv, { registry: registry.url });
  const fnWith = (spec: Record<string, unknown>, revision = 1) =>
    apiObject("functions", "shop", { environment: "python", ...spec }, { revision });

  describe("create", () => {
    it("--src builds a package named like the function, then creates the function on it", async () => {
      registry.on("POST", `${NS}/archives?use=source`, { status: 201, json: { archive: SOURCE } });
      registry.on("POST", PACKAGES, { status: 201, json: pkg("shop", { buildState: "pending" }) });
      registry.on(
        "GET",
        `${PACKAGES}/shop`,
        states(
          pkg("shop", { buildState: "running" }),
          pkg("shop", { buildState: "succeeded", deployment: DEPLOYMENT }),
        ),
      );
      registry.on("POST", FUNCTIONS, {
        status: 201,
        json: fnWith({ package: { name: "shop", deployment: DEPLOYMENT } }),
      });

      const result = await cli(
        "fn",
        "create",
        "--name",
        "shop",
        "--env",
        "python",
        "--src",
        src,
        "--entrypoint",
        "main.main",
        "--env-var",
        "MODE=prod",
        "--env-var",
        "URL=http://x/?a=b",
        "--secret",
        "db",
        "--configmap",
        "settings",
        "--configmap",
        "flags",
      );

      expect(result.stderr).to.equal("");
      expect(result.code).to.equal(0);
      expect(registry.calls()).to.deep.equal([
        `POST ${NS}/archives?use=source`,
        `POST ${PACKAGES}`,
        `GET ${PACKAGES}/shop`,
        `GET ${PACKAGES}/shop`,
        `POST ${FUNCTIONS}`,
      ]);
      expect(registry.jsonBody(1)).to.deep.equal({
        name: "shop",
        spec: { environment: "python", source: SOURCE },
      });
      expect(registry.jsonBody(4)).to.deep.equal({
        name: "shop",
        spec: {
          environment: "python",
          package: { name: "shop" },
          entrypoint: "main.main",
          env: { MODE: "prod", URL: "http://x/?a=b" },
          secrets: ["db"],
          configmaps: ["settings", "flags"],
        },
      });
      expect(result.stdout).to.equal('function "shop" created\n');
    });

    it("does not create the function when the build fails: log tail, package kept for pkg info, exit 1", async () => {
      registry.on("POST", `${NS}/archives?use=source`, { status: 201, json: { archive: SOURCE } });
      registry.on("POST", PACKAGES, { status: 201, json: pkg("shop", { buildState: "pending" }) });
      registry.on("GET", `${PACKAGES}/shop`, {
        json: pkg("shop", {
          buildState: "failed",
          buildLog: "ERROR: Could not find a version that satisfies the requirement nope\n",
          message: "pip install failed (exit status 1)",
        }),
      });

      const result = await cli("fn", "create", "--name", "shop", "--env", "python", "--src", src);

      expect(result.code).to.equal(1);
      expect(registry.calls()).to.deep.equal([
        `POST ${NS}/archives?use=source`,
        `POST ${PACKAGES}`,
        `GET ${PACKAGES}/shop`,
      ]);
      expect(result.stderr).to.include("satisfies the requirement nope\n");
      expect(result.stderr).to.include(
        'Error: the build of package "shop" failed: pip install failed (exit status 1)\n' +
          'The function was not created. Package "shop" keeps the failed build\'s log (fizz pkg info --name shop); fix the source and run the command again.\n',
      );
    });

    it("reuses the package a failed fn create left behind when run again", async () => {
      registry.on("POST", `${NS}/archives?use=source`, { status: 201, json: { archive: SOURCE } });
      registry.on("POST", PACKAGES, {
        status: 409,
        json: { error: { code: "ALREADY_EXISTS", message: 'package "shop" already exists' } },
      });
      registry.on("GET", `${PACKAGES}/shop`, {
        json: pkg("shop", { buildState: "failed", message: "exit 1" }),
      });
      registry.on("PATCH", `${PACKAGES}/shop`, {
        json: pkg("shop", { buildState: "pending" }),
      });

      const result = await cli("fn", "create", "--name", "shop", "--env", "python", "--src", src);

      expect(registry.calls().slice(0, 4)).to.deep.equal([
        `POST ${NS}/archives?use=source`,
        `POST ${PACKAGES}`,
        `GET ${PACKAGES}/shop`,
        `PATCH ${PACKAGES}/shop`,
      ]);
      expect(result.stderr).to.not.include("exists; use --pkg");
    });

    it("removes the package again when the registry refuses the function", async () => {
      registry.on("POST", `${NS}/archives?use=deployment`, {
        status: 201,
        json: { archive: DEPLOYMENT },
      });
      registry.on("POST", PACKAGES, { status: 201, json: pkg("shop", { buildState: "pending" }) });
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
      registry.on("POST", FUNCTIONS, {
        status: 400,
        json: apiError("UNKNOWN_SECRET", 'secret "db" does not exist', "spec.secrets"),
      });
      registry.on("DELETE", `${PACKAGES}/shop`, { json: {} });

      const result = await cli(
        "fn",
        "create",
        "--name",
        "shop",
        "--env",
        "python",
        "--deploy",
        src,
        "--secret",
        "db",
      );

      expect(result.code).to.equal(1);
      expect(registry.calls().at(-1)).to.equal(`DELETE ${PACKAGES}/shop`);
      expect(result.stderr).to.equal(
        'Error: secret "db" does not exist (UNKNOWN_SECRET)\nPackage "shop" was removed again.\n',
      );
    });

    it("--pkg uses an existing package without uploading anything", async () => {
      registry.on("POST", FUNCTIONS, { status: 201, json: fnWith({ package: { name: "lib" } }) });

      const result = await cli("fn", "create", "--name", "shop", "--env", "python", "--pkg", "lib");

      expect(result.code).to.equal(0);
      expect(registry.calls()).to.deep.equal([`POST ${FUNCTIONS}`]);
      expect(registry.jsonBody(0)).to.deep.equal({
        name: "shop",
        spec: { environment: "python", package: { name: "lib" } },
      });
    });

    for (const [argv, message] of [
      [["--code", "a.py", "--src", "d"], "--code and --src exclude each other"],
      [["--src", "d", "--deploy", "e"], "--src and --deploy exclude each other"],
      [["--pkg", "p", "--deploy", "e"], "--deploy and --pkg exclude each other"],
      [[], "give the function's code: --code <file>, --src"],
      [["--pkg", "p", "--build-cmd", "make"], "--build-cmd needs --src"],
      [
        ["--pkg", "p", "--env-var", "NOEQUALS"],
        "option '--env-var <key=value>' argument 'NOEQUALS' is invalid",
      ],
      [["--pkg", "p", "--env-var", "=v"], "expected KEY=VALUE"],
      [["--pkg", "p", "--env-var", "FIZZ_X=1"], "FIZZ_* variables are the platform's"],
      [
        ["--pkg", "p", "--secret", "Bad_Name"],
        "option '--secret <name>' argument 'Bad_Name' is invalid",
      ],
    ] as const) {
      it(`refuses ${argv.join(" ") || "no code flag"} with exit 2, sending nothing`, async () => {
        const result = await cli("fn", "create", "--name", "shop", "--env", "python", ...argv);

        expect(result.code).to.equal(2);
        expect(result.stderr).to.include(message);
        expect(registry.requests).to.have.length(0);
      });
    }
  });

  describe("update", () => {
    it("--src updates the function's package and returns once the build is live", async () => {
      registry.on(
        "GET",
        `${FUNCTIONS}/shop`,
        states(
          fnWith({ package: { name: "lib", deployment: DEPLOYMENT } }),
          fnWith({ package: { name: "lib", deployment: DEPLOYMENT } }, 3),
        ),
      );
      registry.on("POST", `${NS}/archives?use=source`, { status: 201, json: { archive: SOURCE } });
      registry.on("PATCH", `${PACKAGES}/lib`, { json: pkg("lib", { buildState: "pending" }) });
      registry.on(
        "GET",
        `${PACKAGES}/lib`,
        states(
          pkg("lib", { buildState: "running" }),
          pkg("lib", { buildState: "succeeded", deployment: DEPLOYMENT }),
        ),
      );

      const result = await cli("fn", "update", "--name", "shop", "--src", src);

      expect(result.stderr).to.equal("");
      expect(result.code).to.equal(0);
      expect(registry.calls()).to.deep.equal([
        `GET ${FUNCTIONS}/shop`,
        `POST ${NS}/archives?use=source`,
        `PATCH ${PACKAGES}/lib`,
        `GET ${PACKAGES}/lib`,
        `GET ${PACKAGES}/lib`,
        `GET ${FUNCTIONS}/shop`,
      ]);
      expect(registry.jsonBody(2)).to.deep.equal({ spec: { source: SOURCE, deployment: null } });
      expect(result.stdout).to.equal(
        'function "shop" updated: package "lib" rebuilt (revision 3)\n',
      );
    });

    it("--src on a single-file function builds a package named like it and switches the function", async () => {
      registry.on("GET", `${FUNCTIONS}/shop`, {
        json: fnWith({ code: { filename: "main.py", digest: "sha256:00", size: 3 } }),
      });
      registry.on("POST", `${NS}/archives?use=source`, { status: 201, json: { archive: SOURCE } });
      registry.on("POST", PACKAGES, { status: 201, json: pkg("shop", { buildState: "pending" }) });
      registry.on("GET", `${PACKAGES}/shop`, {
        json: pkg("shop", { buildState: "succeeded", deployment: DEPLOYMENT }),
      });
      registry.on("PATCH", `${FUNCTIONS}/shop`, {
        json: fnWith({ package: { name: "shop" } }, 2),
      });

      const result = await cli("fn", "update", "--name", "shop", "--src", src);

      expect(result.code).to.equal(0);
      expect(registry.jsonBody(4)).to.deep.equal({
        spec: { package: { name: "shop" }, code: null },
      });
      expect(result.stdout).to.equal('function "shop" updated (revision 2)\n');
    });

    it("a failed build leaves the function alone and says it keeps its previous build", async () => {
      registry.on("GET", `${FUNCTIONS}/shop`, { json: fnWith({ package: { name: "lib" } }) });
      registry.on("POST", `${NS}/archives?use=source`, { status: 201, json: { archive: SOURCE } });
      registry.on("PATCH", `${PACKAGES}/lib`, { json: pkg("lib", { buildState: "pending" }) });
      registry.on("GET", `${PACKAGES}/lib`, {
        json: pkg("lib", { buildState: "failed", message: "exit 2", buildLog: "boom\n" }),
      });

      const result = await cli("fn", "update", "--name", "shop", "--src", src);

      expect(result.code).to.equal(1);
      expect(registry.calls().filter((c) => c.startsWith("PATCH"))).to.deep.equal([
        `PATCH ${PACKAGES}/lib`,
      ]);
      expect(result.stderr).to.include(
        'Function "shop" keeps running the previous build of package "lib".',
      );
    });

    it('--env-var replaces the env, --secret "" removes all secrets, --configmap replaces the list', async () => {
      registry.on("PATCH", `${FUNCTIONS}/shop`, { json: fnWith({}, 2) });

      const result = await cli(
        "fn",
        "update",
        "--name",
        "shop",
        "--env-var",
        "A=1",
        "--secret",
        "",
        "--configmap",
        "settings",
      );

      expect(result.code).to.equal(0);
      expect(registry.jsonBody(0)).to.deep.equal({
        spec: { env: { A: "1" }, secrets: null, configmaps: ["settings"] },
      });
    });

    it('--env-var "" removes all env vars; --pkg switches from code to a package', async () => {
      registry.on("PATCH", `${FUNCTIONS}/shop`, { json: fnWith({}, 2) });

      const result = await cli("fn", "update", "--name", "shop", "--env-var", "", "--pkg", "lib");

      expect(result.code).to.equal(0);
      expect(registry.jsonBody(0)).to.deep.equal({
        spec: { env: null, package: { name: "lib" }, code: null },
      });
    });
  });

  it("get shows the package, env, secrets and configmaps", async () => {
    registry.on("GET", `${FUNCTIONS}/shop`, {
      json: fnWith({
        package: { name: "lib", deployment: DEPLOYMENT },
        env: { MODE: "prod" },
        secrets: ["db"],
        configmaps: ["settings"],
      }),
    });

    const result = await cli("fn", "get", "--name", "shop");

    expect(result.stdout).to.match(/Package:\s+lib \(deployment sha256:b{64}, 2\.0 KiB\)\n/);
    expect(result.stdout).to.match(/Env:\s+MODE=prod\n/);
    expect(result.stdout).to.match(/Secrets:\s+db\n/);
    expect(result.stdout).to.match(/ConfigMaps:\s+settings\n/);
  });
});
