/**
 * The spec commands' contract at the command line: exit statuses, where problems are printed,
 * and that an invalid spec sends nothing at all (a fake registry records every request).
 */
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { expect } from "chai";
import { freePort } from "@fizz/testkit";
import { labelFrom } from "../src/commands/spec.js";
import { fizz } from "./support/cli.js";
import { FakeServer } from "./support/fake-server.js";
import { CONFIG, project, type Project } from "./spec-support.js";

const KINDS_LISTED = [
  "configmaps",
  "packages",
  "functions",
  "httptriggers",
  "mqtriggers",
  "timetriggers",
  "watchtriggers",
];

describe("fizz spec at the command line", function () {
  this.timeout(20_000);
  let registry: FakeServer;
  let p: Project;
  before(async () => {
    registry = await FakeServer.start();
  });
  beforeEach(async () => {
    registry.reset();
    p = await project({ "get.py": "def main():\n  return 'hi'\n" });
  });
  afterEach(() => p.cleanup());
  after(() => registry.close());

  const run = (argv: string[], env: Record<string, string> = {}) =>
    fizz(argv, { registry: registry.url }, { env });

  it("init writes the DeploymentConfig and refuses to overwrite it", async () => {
    const dir = join(p.root, "specs");
    const first = await run(["spec", "init", "--name", "guestbook", "--dir", dir]);
    expect(first.code, first.stderr).to.equal(0);
    expect(first.stdout).to.equal(`wrote ${dir}/fizz-deployment-config.yaml: spec "guestbook"\n`);
    const text = await readFile(join(dir, "fizz-deployment-config.yaml"), "utf8");
    expect(text).to.match(
      /\napiVersion: fizz.dev\/v1\nkind: DeploymentConfig\nmetadata:\n  name: guestbook\nspec:\n(  #.*\n)+  variables: \[\]\n$/,
    );
    // What init writes is a valid spec on its own.
    const valid = await run(["spec", "validate", "-f", dir]);
    expect(valid.code, valid.stderr).to.equal(0);

    const again = await run(["spec", "init", "--name", "other", "--dir", dir]);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.equal(
      `Error: ${dir}/fizz-deployment-config.yaml already exists; remove it to start a new spec\n`,
    );
    expect(await readFile(join(dir, "fizz-deployment-config.yaml"), "utf8")).to.equal(text);
  });

  it("init names the spec after the current directory, made a DNS label", async () => {
    const dir = join(p.root, "s");
    const r = await run(["spec", "init", "--dir", dir]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include(`spec "${labelFrom(basename(process.cwd()))}"`);
    expect(labelFrom("My App_2 (copy)")).to.equal("my-app-2-copy");
    expect(labelFrom("---")).to.equal("app");
    expect(labelFrom("a".repeat(70))).to.have.length(63);
  });

  it("init refuses a name that is not a DNS label as a usage error", async () => {
    const r = await run(["spec", "init", "--name", "Guest_Book", "--dir", join(p.root, "s")]);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/--name "Guest_Book" must be a DNS label/);
  });

  it("validate prints every problem on stderr and exits 1, without calling the registry", async () => {
    await p.write({
      "specs/a.yaml": `${CONFIG("demo")}---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: f }
spec:
  environment: python
  code: { path: ../nope.py }
  maxInstances: 0
`,
    });
    const r = await run(["spec", "validate", "-f", p.specs]);
    expect(r.code).to.equal(1);
    const a = join(p.specs, "a.yaml");
    expect(r.stderr).to.equal(
      `${a}:11: Function f: spec.code.path: "../nope.py": no such file or directory (${join(p.specs, "../nope.py")})\n` +
        `${a}:12: Function f: spec.maxInstances: must be at least 1\n` +
        "Error: the spec has 2 problems; fix them and validate again\n",
    );
    expect(r.stdout).to.equal("");
    expect(registry.requests).to.have.length(0);
  });

  it("validate of a good spec says what it holds, and that an unreachable registry was not checked", async () => {
    await p.write({
      "specs/a.yaml": `${CONFIG("demo")}---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: f }
spec: { environment: python, code: { path: ../get.py } }
`,
    });
    const closed = `http://127.0.0.1:${await freePort()}`;
    const r = await fizz(["spec", "validate", "-f", p.specs], { registry: closed });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal('spec "demo" is valid: 1 object in 1 file\n');
    expect(r.stderr).to.equal(
      `warning: not checked against the registry (cannot reach the registry at ${closed}: is "npm start" running?): apply needs environment "default/python" to exist there\n`,
    );
  });

  it("apply of an invalid spec sends nothing and exits 1; -o json lists the problems", async () => {
    await p.write({
      "specs/a.yaml": `${CONFIG("demo")}---
apiVersion: fizz.dev/v1
kind: Environment
metadata: { name: python }
spec: { image: fizz/env-python, poolSize: 500 }
`,
    });
    const r = await run(["spec", "apply", "-f", p.specs, "-o", "json"]);
    expect(r.code).to.equal(1);
    expect(registry.requests).to.have.length(0);
    const out = JSON.parse(r.stdout) as {
      valid: boolean;
      problems: Array<Record<string, unknown>>;
    };
    expect(out.valid).to.equal(false);
    expect(out.problems).to.deep.equal([
      {
        file: join(p.specs, "a.yaml"),
        line: 9,
        kind: "Environment",
        name: "python",
        field: "spec.poolSize",
        message: "must be at most 100",
        text: `${join(p.specs, "a.yaml")}:9: Environment python: spec.poolSize: must be at most 100`,
      },
    ]);
    expect(r.stderr).to.equal("Error: the spec has 1 problem; nothing was applied\n");
  });

  it("a missing or empty spec directory is an error naming -f", async () => {
    const missing = await run(["spec", "apply", "-f", join(p.root, "nowhere")]);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.equal(
      `Error: cannot read -f "${join(p.root, "nowhere")}": no such file or directory\n`,
    );
    const empty = await run(["spec", "validate", "-f", p.specs]);
    expect(empty.code).to.equal(1);
    expect(empty.stderr).to.equal(`Error: -f "${p.specs}" holds no spec files (*.yaml, *.yml)\n`);
    expect(registry.requests).to.have.length(0);
  });

  it("a bad --wait-timeout is a usage error", async () => {
    const r = await run(["spec", "apply", "-f", p.specs, "--wait-timeout", "soon"]);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/--wait-timeout <seconds>' argument 'soon' is invalid/);
  });

  it("destroy with a broken document still finds the spec's name, and without one refuses", async () => {
    await p.write({
      "specs/a.yaml": `${CONFIG("demo")}---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: f, namespace: team-a }
spec: { environment: python, code: { path: ../deleted.py } }
`,
    });
    for (const ns of ["default", "team-a"])
      for (const kind of [
        "watchtriggers",
        "timetriggers",
        "mqtriggers",
        "httptriggers",
        "functions",
        "packages",
        "environments",
        "configmaps",
      ])
        registry.on("GET", `/v1/namespaces/${ns}/${kind}?limit=500`, { json: { items: [] } });
    const r = await run(["spec", "destroy", "-f", p.specs]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal(
      'spec "demo": nothing labelled fizz.dev/spec=demo in namespaces default, team-a\n',
    );
    await p.write({ "specs/a.yaml": "apiVersion: fizz.dev/v1\nkind: ConfigMap\n" });
    registry.reset();
    const none = await run(["spec", "destroy", "-f", p.specs]);
    expect(none.code).to.equal(1);
    expect(none.stderr).to.match(/no DeploymentConfig document/);
    expect(registry.requests).to.have.length(0);
  });

  it("a destroy that fails tells to run destroy again, never apply, which would recreate what it deleted", async () => {
    await p.write({ "specs/config.yaml": CONFIG("demo") });
    const labels = { "fizz.dev/spec": "demo" };
    const obj = (kind: string, name: string, spec: Record<string, unknown>) => ({
      apiVersion: "fizz.dev/v1",
      kind,
      metadata: { namespace: "default", name, revision: 1, labels },
      spec,
    });
    for (const kind of ["watchtriggers", "timetriggers", "mqtriggers", "packages", "configmaps"])
      registry.on("GET", `/v1/namespaces/default/${kind}?limit=500`, { json: { items: [] } });
    registry.on("GET", "/v1/namespaces/default/httptriggers?limit=500", {
      json: { items: [obj("HttpTrigger", "r", { function: "f", path: "/r" })] },
    });
    registry.on("GET", "/v1/namespaces/default/functions?limit=500", {
      json: { items: [obj("Function", "f", { environment: "python" })] },
    });
    registry.on("GET", "/v1/namespaces/default/environments?limit=500", {
      json: { items: [obj("Environment", "python", { image: "fizz/env-python" })] },
    });
    registry.on("DELETE", "/v1/namespaces/default/httptriggers/r", {
      json: obj("HttpTrigger", "r", { function: "f", path: "/r" }),
    });
    registry.on("DELETE", "/v1/namespaces/default/functions/f", {
      status: 503,
      json: { error: { code: "UNAVAILABLE", message: "store unavailable" } },
    });

    const r = await run(["spec", "destroy", "-f", p.specs]);

    expect(r.code).to.equal(1);
    expect(r.stdout).to.equal("deleted httptrigger r\n");
    expect(r.stderr).to.include(
      'Destroy stopped there: 1 change was made before it, 1 more was not tried. Fix the cause and run "fizz spec destroy" again for spec "demo"',
    );
    expect(r.stderr).not.to.include("spec apply");
  });

  it("writes refused together are all named: the first in plan order is the error, the others listed", async () => {
    const fn = (name: string) => `---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: ${name} }
spec: { environment: python, code: { path: ../get.py } }
`;
    await p.write({ "specs/config.yaml": CONFIG("demo"), "specs/f.yaml": fn("a") + fn("b") });
    for (const kind of KINDS_LISTED)
      registry.on("GET", `/v1/namespaces/default/${kind}?limit=500`, { json: { items: [] } });
    registry.on("GET", "/v1/namespaces/default/environments?limit=500", {
      json: {
        items: [
          {
            apiVersion: "fizz.dev/v1",
            kind: "Environment",
            metadata: { namespace: "default", name: "python", revision: 1, labels: {} },
            spec: { image: "fizz/env-python" },
          },
        ],
      },
    });
    registry.on("POST", "/v1/namespaces/default/functions", {
      status: 503,
      json: { error: { code: "UNAVAILABLE", message: "store unavailable" } },
    });

    const r = await run(["spec", "apply", "-f", p.specs]);

    expect(r.code).to.equal(1);
    expect(r.stdout).to.equal("");
    expect(r.stderr).to.include(
      "Error: create function a: store unavailable (UNAVAILABLE)\n" +
        "Also refused: create function b: store unavailable (UNAVAILABLE)\n" +
        "Apply stopped there: 0 changes were made before it, 0 more were not tried.",
    );
    const json = await run(["spec", "apply", "-f", p.specs, "-o", "json"]);
    const out = JSON.parse(json.stdout) as { failed: { name: string }; alsoFailed: unknown[] };
    expect(out.failed.name).to.equal("a");
    expect(out.alsoFailed).to.deep.equal([
      {
        action: "create",
        kind: "Function",
        namespace: "default",
        name: "b",
        error: "store unavailable (UNAVAILABLE)",
      },
    ]);
  });

  it("apply --parallel takes 1 to 256 writes at once; anything else is a usage error, nothing sent", async () => {
    await p.write({ "specs/config.yaml": CONFIG("demo") });
    for (const bad of ["0", "257", "many", "2.5"]) {
      const r = await run(["spec", "apply", "-f", p.specs, "--parallel", bad]);
      expect(r.code, bad).to.equal(2);
      expect(r.stderr, bad).to.match(/--parallel <n>.*invalid/);
    }
    expect((await run(["spec", "apply", "-f", p.specs, "--parallel", "0"])).stderr).to.include(
      "must be between 1 and 256",
    );
    expect(registry.requests).to.have.length(0);
  });

  it("destroy takes --parallel as apply does (its deletions run through the same waves)", async () => {
    await p.write({ "specs/config.yaml": CONFIG("demo") });
    for (const bad of ["0", "257", "many"]) {
      const r = await run(["spec", "destroy", "-f", p.specs, "--parallel", bad]);
      expect(r.code, bad).to.equal(2);
      expect(r.stderr, bad).to.match(/--parallel <n>.*invalid/);
    }
    expect(registry.requests).to.have.length(0);
    for (const kind of [...KINDS_LISTED, "environments"])
      registry.on("GET", `/v1/namespaces/default/${kind}?limit=500`, { json: { items: [] } });
    const r = await run(["spec", "destroy", "-f", p.specs, "--parallel", "1"]);
    expect(r.stderr).to.equal("");
    expect(r.code).to.equal(0);
    expect(r.stdout).to.include('spec "demo": nothing labelled fizz.dev/spec=demo');
  });

  it("validate refuses a spec in $HOME naming `..`, with HOME from the CLI's own environment", async () => {
    await p.write({
      "specs/config.yaml": CONFIG("demo"),
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: Package
metadata: { name: home }
spec: { environment: python, deployment: { path: .. } }
`,
    });
    const r = await run(["spec", "validate", "-f", p.specs], { HOME: p.root });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include(
      `${join(p.specs, "a.yaml")}:4: Package home: spec.deployment.path: "..": the project directory would be ${p.root}, your home directory ($HOME)`,
    );
    expect(registry.requests).to.have.length(0);
  });
});
