/**
 * `fizz spec apply` switching an environment to a compiled runtime, against a real registry
 * (real nats-server and redis-server). In place, with its functions moving from single files to
 * packages in the same spec, no order of writes converges (compiled-switch.ts): apply refuses
 * before any write, with a stable code; the change it suggests (a new environment for the
 * compiled runtime) converges in one apply. Functions leaving the environment instead are moved
 * first, the switch after them, in one apply. No builder runs here, so packages use `deployment`.
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "chai";
import { silentLogger } from "@fizz/kit";
import { loadConfig, start, type RegistryService } from "@fizz/registry";
import { freePort, startNats, startRedis, waitFor, type TestServer } from "@fizz/testkit";
import { fizz } from "./support/cli.js";
import { CONFIG, doc, project, type Project } from "./spec-support.js";

const TOKEN = "spec-switch-admin-token-0123456789abcdef";

interface Obj {
  metadata: { name: string; revision: number };
  spec: Record<string, unknown>;
}

const NODE_ENV = doc("Environment", "app", "  image: fizz/env-node\n  poolSize: 0\n");
const CODE_FN = doc("Function", "hello", "  environment: app\n  code: { path: ../hello.js }\n");
const goPackage = (env: string) =>
  doc("Package", "hello-go", `  environment: ${env}\n  deployment: { path: ../build }\n`);
const packagedFn = (env: string) =>
  doc("Function", "hello", `  environment: ${env}\n  package: { name: hello-go }\n`);

describe("fizz spec apply: an environment switched to a compiled runtime, against a real registry", function () {
  this.timeout(60_000);
  let nats: TestServer;
  let redis: TestServer;
  let registry: RegistryService;
  let url: string;
  let p: Project;

  before(async () => {
    [nats, redis] = await Promise.all([startNats(), startRedis()]);
    p = await project({
      "specs/config.yaml": CONFIG("switch"),
      "hello.js": "module.exports = async () => 'hello';\n",
      "build/handler": "a compiled handler\n",
    });
    await mkdir(join(p.root, "work"));
    registry = await start(
      loadConfig({
        FIZZ_NATS_URL: nats.url,
        FIZZ_REDIS_URL: redis.url,
        FIZZ_REGISTRY_PORT: "0",
        FIZZ_LOG_LEVEL: "silent",
        FIZZ_ADMIN_TOKEN: TOKEN,
        FIZZ_REGISTRY_WORKDIR: join(p.root, "work"),
        FIZZ_SYNC_TIMEOUT_MS: "200",
      }),
      { logger: silentLogger() },
    );
    url = `http://127.0.0.1:${registry.port}`;
    await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, {
      what: "registry ready",
    });
  });
  after(async () => {
    await registry?.stop();
    await Promise.all([nats?.cleanup(), redis?.cleanup()]);
    await p?.cleanup();
  });

  const apply = (...more: string[]) =>
    fizz(
      ["spec", "apply", "-f", p.specs, ...more],
      { registry: url },
      { env: { FIZZ_TOKEN: TOKEN } },
    );
  const validate = (registryUrl = url) =>
    fizz(
      ["spec", "validate", "-f", p.specs],
      { registry: registryUrl },
      { env: { FIZZ_TOKEN: TOKEN } },
    );
  async function all(): Promise<Record<string, Obj>> {
    const out: Record<string, Obj> = {};
    for (const kind of ["environments", "packages", "functions"]) {
      const res = await fetch(`${url}/v1/namespaces/default/${kind}`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      for (const o of ((await res.json()) as { items: Obj[] }).items)
        out[`${kind}/${o.metadata.name}`] = o;
    }
    return out;
  }

  it("refuses a switch in place that no order converges, before any write, saying what to do; the suggested spec converges in one apply", async () => {
    await p.write({ "specs/a.yaml": `${NODE_ENV}${CODE_FN}` });
    const first = await apply();
    expect(first.code, first.stderr).to.equal(0);
    const before = await all();

    // Go image, the function moved to a package of the same environment: a cycle.
    await p.write({
      "specs/a.yaml": `${NODE_ENV.replace("env-node", "env-go")}${goPackage("app")}${packagedFn("app")}`,
    });
    // validate reads the registry too, and refuses what apply refuses, with the same code.
    const checked = await validate();
    expect(checked.code).to.equal(1);
    expect(checked.stdout).to.equal("");
    expect(checked.stderr).to.match(
      /a\.yaml:\d+: Environment app: spec\.image: environment "app" cannot be switched to go \(compiled\) in place/,
    );
    expect(checked.stderr).to.include("(COMPILED_SWITCH_BLOCKED)\n");
    expect(checked.stderr).to.include("apply would refuse to run");
    for (const run of [["--dry-run"], []]) {
      const r = await apply(...run);
      expect(r.code).to.equal(1);
      expect(r.stdout).to.equal("");
      expect(r.stderr).to.match(
        /a\.yaml:\d+: Environment app: spec\.image: environment "app" cannot be switched to go \(compiled\) in place: functions "hello" run single source files \(spec\.code\) on it/,
      );
      expect(r.stderr).to.include('give the go runtime a new environment (e.g. "app-go")');
      expect(r.stderr).to.include("(COMPILED_SWITCH_BLOCKED)\n");
      expect(r.stderr).to.include("nothing was applied");
      expect(await all()).to.deep.equal(before);
    }

    // What the refusal suggests: the Go runtime in a new environment, the old one pruned.
    await p.write({
      "specs/a.yaml": `${NODE_ENV}${doc("Environment", "app-go", "  image: fizz/env-go\n  poolSize: 0\n")}${goPackage("app-go")}${packagedFn("app-go")}`,
    });
    const moved = await apply();
    expect(moved.code, moved.stderr).to.equal(0);
    expect(moved.stdout).to.include("created environment app-go\n");
    expect(moved.stdout).to.include(
      "updated function hello (spec.environment, spec.package, spec.code; revision 2)\n",
    );
    await p.write({
      "specs/a.yaml": `${doc("Environment", "app-go", "  image: fizz/env-go\n  poolSize: 0\n")}${goPackage("app-go")}${packagedFn("app-go")}`,
    });
    const pruned = await apply("--prune");
    expect(pruned.code, pruned.stderr).to.equal(0);
    expect(pruned.stdout).to.include("deleted environment app\n");
    const after = await all();
    expect(Object.keys(after).sort()).to.deep.equal([
      "environments/app-go",
      "functions/hello",
      "packages/hello-go",
    ]);
    expect(after["functions/hello"]!.spec).to.include({ environment: "app-go" });
    expect(after["functions/hello"]!.spec.code).to.equal(undefined);
    const again = await apply("--prune");
    expect(again.stdout).to.include(
      'spec "switch": 0 created, 0 updated, 3 unchanged, 0 deleted\n',
    );
  });

  it("switches an environment to a compiled runtime after its single-file functions move to another one, in one apply", async () => {
    const env = (name: string, image: string) =>
      doc("Environment", name, `  image: fizz/env-${image}\n  poolSize: 0\n`);
    const fn = (name: string, on: string) =>
      doc("Function", name, `  environment: ${on}\n  code: { path: ../hello.js }\n`);
    const route = doc("HttpTrigger", "w1", "  function: w1\n  path: /w1\n");
    await p.write({ "specs/a.yaml": `${env("svc", "node")}${fn("w1", "svc")}${fn("w2", "svc")}` });
    // The spec now holds only these (the first test's objects are pruned).
    const first = await apply("--prune");
    expect(first.code, first.stderr).to.equal(0);

    // svc becomes Go; w1 moves to a new Node environment, w2 is dropped (pruned).
    await p.write({
      "specs/a.yaml": `${env("svc", "go")}${env("js", "node")}${fn("w1", "js")}${route}`,
    });
    const r = await apply("--prune");

    expect(r.stderr).to.equal("");
    expect(r.code).to.equal(0);
    expect(r.stdout.split("\n")).to.deep.equal([
      "created environment js",
      "updated function w1 (spec.environment; revision 2)",
      "created httptrigger w1",
      "deleted function w2",
      r.stdout.split("\n")[4],
      'spec "switch": 2 created, 2 updated, 0 unchanged, 1 deleted',
      "",
    ]);
    expect(r.stdout.split("\n")[4]).to.match(
      /^updated environment svc \(spec\.image; revision \d+\)$/,
    );
    const after = await all();
    expect(after["environments/svc"]!.spec.image).to.equal("fizz/env-go");
    expect(after["functions/w1"]!.spec.environment).to.equal("js");
    expect(after["functions/w2"]).to.equal(undefined);
    const again = await apply("--prune");
    expect(again.stdout).to.include(
      'spec "switch": 0 created, 0 updated, 4 unchanged, 0 deleted\n',
    );
  });

  it("refuses a function with spec.code on an environment created compiled before any write, where the registry refused it after creating the environment", async () => {
    const before = await all();
    await p.write({
      "specs/b.yaml": `${doc("Environment", "gonew", "  image: fizz/env-go\n  poolSize: 0\n")}${doc("Function", "onego", "  environment: gonew\n  code: { path: ../hello.js }\n")}`,
    });
    try {
      const r = await apply();
      expect(r.code).to.equal(1);
      expect(r.stdout).to.equal("");
      expect(r.stderr).to.match(
        /b\.yaml:\d+: Function onego: spec\.code: environment "gonew" runs go, which is compiled/,
      );
      expect(r.stderr).to.include("(CODE_NEEDS_PACKAGE)\n");
      expect(r.stderr).to.include("nothing was applied");
      expect(await all()).to.deep.equal(before);
      // validate says the same, against the registry and offline (it needs no stored object).
      const closed = `http://127.0.0.1:${await freePort()}`;
      for (const registryUrl of [url, closed]) {
        const v = await validate(registryUrl);
        expect(v.code, registryUrl).to.equal(1);
        expect(v.stderr).to.match(
          /b\.yaml:\d+: Function onego: spec\.code: environment "gonew" runs go, which is compiled.*\(CODE_NEEDS_PACKAGE\)\n/,
        );
        expect(v.stderr).to.include("apply would refuse to run");
      }
    } finally {
      await rm(join(p.specs, "b.yaml"));
    }
  });

  it("switches after the functions leaving, in one apply, with a package of the environment given a deployment (no build) in the same run", async () => {
    await p.write({
      "specs/a.yaml": `${doc("Environment", "sw", "  image: fizz/env-node\n  poolSize: 0\n")}${doc("Function", "x", "  environment: sw\n  code: { path: ../hello.js }\n")}`,
    });
    const first = await apply("--prune");
    expect(first.code, first.stderr).to.equal(0);
    await p.write({
      "specs/a.yaml": `${doc("Environment", "sw", "  image: fizz/env-go\n  poolSize: 0\n")}${doc("Environment", "sw-js", "  image: fizz/env-node\n  poolSize: 0\n")}${doc("Function", "x", "  environment: sw-js\n  code: { path: ../hello.js }\n")}${goPackage("sw")}`,
    });
    const r = await apply("--prune");
    expect(r.stderr).to.equal("");
    expect(r.code).to.equal(0);
    const after = await all();
    expect(after["environments/sw"]!.spec.image).to.equal("fizz/env-go");
    expect(after["packages/hello-go"]!.spec.environment).to.equal("sw");
    expect(after["functions/x"]!.spec.environment).to.equal("sw-js");
  });
});
