/**
 * Loading a spec: every problem names the file, the line of the offending value, the object and
 * the field, and all of them are listed in one go. Nothing here talks to a registry.
 */
import { execFileSync } from "node:child_process";
import { readFile, symlink } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "chai";
import { loadSpec, type LoadedSpec } from "../src/spec/load.js";
import { formatProblem } from "../src/spec/problems.js";
import { checkAgainstState, RegistryState, type StoredObject } from "../src/spec/state.js";
import { CONFIG, project, type Project } from "./spec-support.js";

const MAX = 8 * 1024 * 1024;

async function load(p: Project, env: Record<string, string> = {}, dirs = [p.specs]) {
  const r = await loadSpec({ dirs, env, namespace: "default", codeMaxBytes: MAX });
  return { spec: r.spec, lines: r.problems.map(formatProblem) };
}

describe("fizz spec: loading and validating spec files", function () {
  this.timeout(20_000);
  let p: Project;
  let a: string;
  beforeEach(async () => {
    p = await project({
      "specs/config.yaml": CONFIG("demo"),
      "get.py": "def main():\n  return 'hi'\n",
    });
    a = join(p.specs, "a.yaml");
  });
  afterEach(() => p.cleanup());

  it("loads a valid spec with defaults applied and code read from the file", async () => {
    await p.write({
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: Environment
metadata: { name: python }
spec: { image: fizz/env-python }
---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: get, labels: { tier: web } }
spec:
  environment: python
  code: { path: ../get.py }
`,
    });
    const { spec, lines } = await load(p);
    expect(lines).to.deep.equal([]);
    const s = spec as LoadedSpec;
    expect(s.name).to.equal("demo");
    expect(s.objects.map((o) => `${o.kind}/${o.name}`)).to.deep.equal([
      "Environment/python",
      "Function/get",
    ]);
    const fn = s.objects[1]!;
    expect(fn.spec).to.include({ minInstances: 0, maxInstances: 10, timeoutSeconds: 60 });
    expect(fn.spec.code).to.deep.equal({ filename: "get.py", content: "" });
    expect(fn.codeFile?.digest).to.match(/^sha256:[0-9a-f]{64}$/);
    expect(fn.labels).to.deep.equal({ tier: "web" });
    expect(s.objects[0]!.spec.poolSize).to.equal(3);
  });

  it("reads a code file once per load, however many functions name it (also through a link)", async () => {
    await symlink(join(p.root, "get.py"), join(p.root, "link.py"));
    await p.write({
      "other.py": "def main():\n  return 'other'\n",
      "specs/a.yaml": ["get", "get2", "link", "other"]
        .map(
          (name) => `apiVersion: fizz.dev/v1
kind: Function
metadata: { name: ${name} }
spec: { environment: python, code: { path: ../${name === "get2" ? "get" : name}.py } }
`,
        )
        .join("---\n"),
    });
    const { spec, lines } = await load(p);
    expect(lines.filter((l) => !l.includes("environment"))).to.deep.equal([]);
    const file = (name: string) => spec!.objects.find((o) => o.name === name)!.codeFile!;
    // One read: one buffer shared, not a copy per function (10,000 functions, one file).
    expect(file("get2")).to.equal(file("get"));
    expect(file("link")).to.equal(file("get"));
    expect(file("other")).not.to.equal(file("get"));
    expect(file("other").bytes.toString()).to.include("other");
    expect(
      (spec!.objects.find((o) => o.name === "link")!.spec.code as { filename: string }).filename,
    ).to.equal("link.py");
  });

  it("reports a YAML syntax error with its file and line", async () => {
    await p.write({
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: ConfigMap
metadata:
  name: cfg
spec:
  data: { a: "1", b: [x, y }
`,
    });
    const { spec, lines } = await load(p);
    expect(spec).to.equal(undefined);
    expect(lines).to.not.have.length(0);
    for (const line of lines)
      expect(line).to.match(new RegExp(`^${a}:6: Flow .* must .*end with a`));
  });

  it("lists every problem of every document, each with file, line, object and field", async () => {
    await p.write({
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: Widget
metadata:
  name: w
spec: {}
---
apiVersion: fizz.dev/v1
kind: Function
metadata:
  labels: { a: b }
spec:
  environment: python
  code: { path: ../get.py }
---
apiVersion: fizz.dev/v1
kind: Environment
metadata:
  name: python
spec:
  image: fizz/env-python
  poolSize: three
---
apiVersion: fizz.dev/v1
kind: Function
metadata:
  name: guestbook-get
spec:
  environment: python
  code: { path: ../missing.py }
  minInstances: 5
  maxInstances: 2
  timeout: 3
`,
    });
    const { spec, lines } = await load(p);
    expect(spec).to.equal(undefined);
    expect(lines).to.deep.equal([
      `${a}:2: Widget w: kind: unknown kind "Widget" (known: Environment, Function, HttpTrigger, MessageQueueTrigger, TimeTrigger, WatchTrigger, Package, ConfigMap, DeploymentConfig)`,
      `${a}:9: Function: metadata.name: is required`,
      `${a}:21: Environment python: spec.poolSize: must be a number`,
      `${a}:29: Function guestbook-get: spec.code.path: "../missing.py": no such file or directory (${join(p.specs, "../missing.py")})`,
      `${a}:30: Function guestbook-get: spec.minInstances: 5 is above spec.maxInstances (2)`,
      `${a}:32: Function guestbook-get: spec.timeout: unknown field (known: environment, code, package, entrypoint, env, secrets, configmaps, concurrency, minInstances, maxInstances, timeoutSeconds, idleTimeoutSeconds)`,
    ]);
  });

  it("words schema problems the way the registry does, at the nested value's line", async () => {
    await p.write({
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: MessageQueueTrigger
metadata: { name: orders }
spec:
  function: f
  subject: orders.new
  maxRetries: 1000
  extra: 1
---
apiVersion: fizz.dev/v1
kind: WatchTrigger
metadata: { name: w }
spec:
  function: f
  namespace: default
  resource: pods
  events:
    - ADDED
    - CREATED
---
apiVersion: fizz.dev/v1
kind: TimeTrigger
metadata: { name: nightly }
spec: { function: f, cron: "61 * * * *" }
---
apiVersion: fizz.dev/v1
kind: HttpTrigger
metadata: { name: r }
spec:
  function: f
  path: /metrics
`,
    });
    const { lines } = await load(p);
    expect(lines).to.deep.equal([
      `${a}:7: MessageQueueTrigger orders: spec.maxRetries: must be at most 100`,
      `${a}:8: MessageQueueTrigger orders: spec.extra: unknown field (known: function, subject, queueGroup, responseSubject, errorSubject, maxRetries, contentType, stream)`,
      `${a}:19: WatchTrigger w: spec.events.1: must be one of ADDED, MODIFIED, DELETED`,
      `${a}:24: TimeTrigger nightly: spec.cron: "61 * * * *": CronPattern: Invalid value for minute: 61`,
      `${a}:31: HttpTrigger r: spec.path: "/metrics" is the gateway's own (/healthz, /readyz, /metrics, /function/, /async-function/); pick another path`,
    ]);
  });

  it("refuses a second DeploymentConfig, naming where the first is", async () => {
    await p.write({ "specs/b.yaml": `# another\n${CONFIG("other")}` });
    const { spec, lines } = await load(p);
    expect(spec).to.equal(undefined);
    expect(lines).to.deep.equal([
      `${join(p.specs, "config.yaml")}:4: DeploymentConfig demo: a second DeploymentConfig (the first is other at ${join(p.specs, "b.yaml")}:5); the spec needs exactly one`,
    ]);
  });

  it("needs a DeploymentConfig", async () => {
    await p.remove("specs/config.yaml");
    await p.write({
      "specs/a.yaml": CONFIG("x").replace("DeploymentConfig", "ConfigMap") + "spec: { data: {} }\n",
    });
    const { lines } = await load(p);
    expect(lines).to.deep.equal([
      `${p.specs}: no DeploymentConfig document: the spec needs exactly one (create it with "fizz spec init")`,
    ]);
  });

  it("refuses the same kind, namespace and name twice, across files and directories", async () => {
    const cm = (ns: string) =>
      `apiVersion: fizz.dev/v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: ${ns}\nspec: { data: {} }\n`;
    await p.write({
      "specs/a.yaml": cm("default"),
      "more/b.yaml": `${cm("team-a")}---\n${cm("default")}`,
    });
    const { lines } = await load(p, {}, [p.specs, join(p.root, "more")]);
    expect(lines).to.deep.equal([
      `${join(p.root, "more", "b.yaml")}:11: ConfigMap cfg: metadata.name: defined twice in namespace "default"; the first is at ${a}:4`,
    ]);
  });

  it("substitutes variables, keeping $${ literal and re-reading unquoted values as YAML", async () => {
    await p.write({
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: Environment
metadata: { name: python }
spec:
  image: fizz/env-python
  # In a flow mapping ({...}) braces are YAML's: quote such values there, or use block style.
  poolSize: \${POOL:-2}
---
apiVersion: fizz.dev/v1
kind: ConfigMap
metadata: { name: guestbook }
spec:
  data:
    redis-url: \${GUESTBOOK_REDIS_URL:-redis://127.0.0.1:6379/0}
    template: "Hello $\${USER}"
    count: "\${POOL:-2}"
    shape: \${SHAPE}
`,
      "specs/config.yaml": CONFIG("demo", ["POOL", "GUESTBOOK_REDIS_URL", "SHAPE"]),
    });
    const { spec, lines } = await load(p, { SHAPE: "a: b" });
    expect(lines).to.deep.equal([]);
    const [cm, env] = (spec as LoadedSpec).objects.map((o) => o.spec);
    expect(env!.poolSize).to.equal(2);
    expect(cm!.data).to.deep.equal({
      "redis-url": "redis://127.0.0.1:6379/0",
      template: "Hello ${USER}",
      count: "2",
      // A variable fills in a value; it cannot turn it into a map.
      shape: "a: b",
    });
    expect((spec as LoadedSpec).variables).to.deep.equal([
      { name: "POOL", defaulted: true },
      { name: "GUESTBOOK_REDIS_URL", defaulted: true },
      { name: "SHAPE", defaulted: false },
    ]);
  });

  it("reports an unset variable at its line, and refuses FIZZ_* variables even when declared", async () => {
    await p.write({
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: ConfigMap
metadata: { name: guestbook }
spec:
  data:
    redis-url: \${GUESTBOOK_REDIS_URL}
    token: "\${FIZZ_TOKEN}"
`,
      "specs/config.yaml": `apiVersion: fizz.dev/v1
kind: DeploymentConfig
metadata: { name: demo }
spec:
  variables:
    - GUESTBOOK_REDIS_URL
    - FIZZ_TOKEN
    - 9LIVES
    - GUESTBOOK_REDIS_URL
`,
    });
    const { spec, lines } = await load(p, { FIZZ_TOKEN: "admin-token-value-0123456789" });
    expect(spec).to.equal(undefined);
    const c = join(p.specs, "config.yaml");
    expect(lines).to.deep.equal([
      `${a}:6: ConfigMap guestbook: spec.data.redis-url: variable GUESTBOOK_REDIS_URL is not set (set it, or give a default: \${GUESTBOOK_REDIS_URL:-value})`,
      `${a}:7: ConfigMap guestbook: spec.data.token: variable FIZZ_TOKEN may not be used: FIZZ_* variables configure the CLI (FIZZ_TOKEN is the registry token) and never go into a spec`,
      `${c}:7: DeploymentConfig demo: spec.variables.1: FIZZ_TOKEN may not be declared: FIZZ_* variables configure the CLI (FIZZ_TOKEN is the registry token) and never go into a spec`,
      `${c}:8: DeploymentConfig demo: spec.variables.2: "9LIVES" is not an environment variable name (letters, digits and '_', not starting with a digit)`,
      `${c}:9: DeploymentConfig demo: spec.variables.3: GUESTBOOK_REDIS_URL is declared twice`,
    ]);
  });

  it("refuses an undeclared variable at its line, naming it: a spec cannot copy the shell's secrets into an object", async () => {
    await p.write({
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: ConfigMap
metadata: { name: loot }
spec:
  data:
    aws: \${AWS_SECRET_ACCESS_KEY}
    gh: "token \${GITHUB_TOKEN:-none}"
    url: \${GUESTBOOK_REDIS_URL}
`,
      "specs/config.yaml": CONFIG("demo", ["GUESTBOOK_REDIS_URL"]),
    });
    const env = {
      AWS_SECRET_ACCESS_KEY: "aws-secret-value",
      GITHUB_TOKEN: "ghp_secretvalue",
      GUESTBOOK_REDIS_URL: "redis://db:6379/0",
    };
    const { spec, lines } = await load(p, env);
    expect(spec).to.equal(undefined);
    expect(lines).to.deep.equal([
      `${a}:6: ConfigMap loot: spec.data.aws: variable AWS_SECRET_ACCESS_KEY is not declared: only variables listed in the DeploymentConfig's spec.variables are taken from the environment; add AWS_SECRET_ACCESS_KEY there if this spec should read it`,
      `${a}:7: ConfigMap loot: spec.data.gh: variable GITHUB_TOKEN is not declared: only variables listed in the DeploymentConfig's spec.variables are taken from the environment; add GITHUB_TOKEN there if this spec should read it`,
    ]);
    expect(lines.join("\n")).not.to.match(/aws-secret-value|ghp_secretvalue/);

    // Declared, the same variable is substituted.
    await p.write({
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: ConfigMap
metadata: { name: ok }
spec: { data: { url: "\${GUESTBOOK_REDIS_URL}" } }
`,
    });
    const ok = await load(p, env);
    expect(ok.lines).to.deep.equal([]);
    expect(ok.spec!.objects[0]!.spec.data).to.deep.equal({ url: "redis://db:6379/0" });
  });

  it("refuses Secret documents and a hand-set fizz.dev/spec label", async () => {
    await p.write({
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: Secret
metadata: { name: db }
spec: { data: { password: c2VjcmV0 } }
---
apiVersion: fizz.dev/v1
kind: ConfigMap
metadata:
  name: cfg
  labels:
    fizz.dev/spec: other
spec: { data: {} }
`,
    });
    const { lines } = await load(p);
    expect(lines[0]).to.match(
      new RegExp(`^${a}:2: Secret db: kind: secrets do not belong in spec files`),
    );
    expect(lines[1]).to.equal(
      `${a}:11: ConfigMap cfg: metadata.labels.fizz.dev/spec: is set by fizz spec apply from the DeploymentConfig's name; remove it`,
    );
  });

  it("refuses files outside the project directory, directly or through a symlink", async () => {
    const outside = await project({ "secret.txt": "id_rsa contents" });
    try {
      await symlink(join(outside.root, "secret.txt"), join(p.root, "innocent.py"));
      await p.write({
        "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: Function
metadata: { name: a }
spec: { environment: python, code: { path: ${join(outside.root, "secret.txt")} } }
---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: b }
spec: { environment: python, code: { path: ../../${outside.root.split("/").pop()}/secret.txt } }
---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: c }
spec: { environment: python, code: { path: ../innocent.py } }
---
apiVersion: fizz.dev/v1
kind: Package
metadata: { name: d }
spec: { environment: python, deployment: { path: ../.. } }
`,
      });
      const { lines } = await load(p);
      expect(lines[0]).to.match(
        new RegExp(`^${a}:4: Function a: spec.code.path: ".*secret.txt": must be relative`),
      );
      for (const [line, name, field] of [
        [9, "Function b", "spec.code.path"],
        [14, "Function c", "spec.code.path"],
        [19, "Package d", "spec.deployment.path"],
      ] as const) {
        expect(lines).to.satisfy((all: string[]) =>
          all.some(
            (l) =>
              l.startsWith(`${a}:${line}: ${name}: ${field}: `) &&
              l.includes(`is outside the project directory ${p.root}`),
          ),
        );
      }
    } finally {
      await outside.cleanup();
    }
  });

  it("refuses every file path when the project directory would be $HOME: `path: ..` cannot pack ~/.ssh", async () => {
    // The spec directory sits right in a fake home directory holding a "private key".
    await p.write({
      ".ssh/id_rsa": "PRIVATE KEY",
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: Package
metadata: { name: home }
spec:
  environment: python
  deployment: { path: .. }
---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: f }
spec:
  environment: python
  code: { path: ../get.py }
`,
    });
    const { spec, lines } = await load(p, { HOME: p.root });
    expect(spec).to.equal(undefined);
    const why = `the project directory would be ${p.root}, your home directory ($HOME) (the parent of the spec directory)`;
    expect(lines).to.include(
      `${a}:6: Package home: spec.deployment.path: "..": ${why}; a spec may only name files inside a project directory, so put the spec directory in the project's git repository or in a directory of its own`,
    );
    expect(lines.map((l) => l.split(`: ${why}`)[0])).to.include(
      `${a}:13: Function f: spec.code.path: "../get.py"`,
    );

    // Below a directory holding $HOME, or in a git work tree that is $HOME (dotfiles in git): the same.
    expect((await load(p, { HOME: join(p.root, "home", "me") })).lines[0]).to.include(
      `the project directory would be ${p.root}, a directory holding your home directory ($HOME)`,
    );
    await p.write({
      ".git/HEAD": "ref: refs/heads/main\n",
      "proj/specs/config.yaml": CONFIG("demo"),
    });
    await p.write({
      "proj/specs/a.yaml": (await readFile(a, "utf8")).replace("path: ..", "path: ../.."),
    });
    const inRepo = await load(p, { HOME: p.root }, [join(p.root, "proj", "specs")]);
    expect(inRepo.lines[0]).to.include(
      `the project directory would be ${p.root}, your home directory ($HOME) (the git work tree holding the spec directory)`,
    );
  });

  it("takes the enclosing git work tree as the project directory, so specs/ deep in a repository may name files at its top", async () => {
    await p.write({
      ".git/HEAD": "ref: refs/heads/main\n",
      "deploy/fizz/specs/config.yaml": CONFIG("demo"),
      "deploy/fizz/specs/a.yaml": `apiVersion: fizz.dev/v1
kind: Environment
metadata: { name: python }
spec: { image: fizz/env-python }
---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: f }
spec: { environment: python, code: { path: ../../../get.py } }
`,
    });
    const { spec, lines } = await load(p, { HOME: "/nonexistent-home" }, [
      join(p.root, "deploy", "fizz", "specs"),
    ]);
    expect(lines).to.deep.equal([]);
    expect(spec?.objects.map((o) => o.name)).to.deep.equal(["python", "f"]);
  });

  it("the examples, inside this repository, still load with a home directory set", async () => {
    for (const example of ["guestbook", "hello", "kube-events"]) {
      const dir = join(import.meta.dirname, "..", "..", "examples", example, "specs");
      const { lines } = await load(p, { HOME: "/nonexistent-home" }, [dir]);
      expect(lines, example).to.deep.equal([]);
    }
  });

  it("refuses code that is not a regular file, or over the size limit", async () => {
    execFileSync("mkfifo", [join(p.root, "pipe.py")]);
    await p.write({
      "big.py": Buffer.alloc(2048, "a"),
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: Function
metadata: { name: a }
spec: { environment: python, code: { path: ../pipe.py } }
---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: b }
spec: { environment: python, code: { path: ../big.py } }
---
apiVersion: fizz.dev/v1
kind: Package
metadata: { name: c }
spec: { environment: python, source: { path: ../get.py } }
`,
    });
    const r = await loadSpec({
      dirs: [p.specs],
      env: {},
      namespace: "default",
      codeMaxBytes: 1024,
    });
    expect(r.problems.map(formatProblem)).to.deep.equal([
      `${a}:4: Function a: spec.code.path: "../pipe.py" is not a regular file`,
      `${a}:9: Function b: spec.code.path: "../big.py" is 2048 bytes, over the limit of 1024 (FIZZ_CODE_MAX_BYTES)`,
      `${a}:14: Package c: spec.source.path: "../get.py" is not a directory or an archive (.zip, .tar, .tar.gz)`,
    ]);
  });

  it("checks references inside the spec: a function's package must be for its environment", async () => {
    await p.write({
      "app/main.py": "x = 1\n",
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: Package
metadata: { name: app }
spec: { environment: node, deployment: { path: ../app } }
---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: f }
spec:
  environment: python
  package: { name: app }
`,
    });
    const { lines } = await load(p);
    expect(lines).to.deep.equal([
      `${a}:11: Function f: spec.package.name: package "app" is for environment "node", the function runs in "python"`,
    ]);
  });

  it("reports references the registry does not have at the referring field's line", async () => {
    await p.write({
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: Function
metadata: { name: f }
spec:
  environment: python
  code: { path: ../get.py }
  secrets: [db]
---
apiVersion: fizz.dev/v1
kind: HttpTrigger
metadata: { name: r }
spec: { function: g, path: /r }
`,
    });
    const { spec } = await load(p);
    const state = new RegistryState(
      new Map<string, StoredObject[]>([
        ["environments/default", []],
        ["functions/default", []],
      ]),
    );
    const found = checkAgainstState(spec as LoadedSpec, state);
    expect(found.problems.map(formatProblem)).to.deep.equal([
      `${a}:5: Function f: spec.environment: environment "python" is neither in the spec nor in namespace "default" of the registry`,
      `${a}:12: HttpTrigger r: spec.function: function "g" is neither in the spec nor in namespace "default" of the registry`,
    ]);
    expect(found.warnings).to.deep.equal([
      `${a}:7: Function f: spec.secrets.0: secret "db" is neither in the spec nor in namespace "default" of the registry; the function fails to start until it exists (fizz secret create --name db)`,
    ]);
  });

  it("refuses an alias bomb instead of expanding it", async () => {
    const levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 8; i++)
      levels.push(
        `${"abcdefgh"[i]}: &${"abcdefgh"[i]} [${Array(10)
          .fill(`*${"abcdefgh"[i - 1]}`)
          .join(", ")}]`,
      );
    await p.write({
      "specs/a.yaml": `apiVersion: fizz.dev/v1
kind: ConfigMap
metadata: { name: bomb }
x:
  ${levels.join("\n  ")}
spec: { data: {} }
`,
    });
    const { lines } = await load(p);
    expect(lines).to.have.length(1);
    expect(lines[0]).to.match(new RegExp(`^${a}:\\d+: .*alias`, "i"));
  });
});
