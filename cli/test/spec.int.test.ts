/**
 * `fizz spec apply|destroy` against a real registry (real nats-server and redis-server): every
 * kind is created from YAML, a second run changes and uploads nothing (counted by the registry's
 * own request metrics), one changed file updates one object, --dry-run and invalid specs write
 * nothing, --prune and destroy delete only what carries the spec's label. No builder runs here,
 * so packages use `deployment` (live at once); a `source` package stays pending.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "chai";
import { silentLogger } from "@fizz/kit";
import { loadConfig, start, type RegistryService } from "@fizz/registry";
import { startNats, startRedis, waitFor, type TestServer } from "@fizz/testkit";
import { fizz } from "./support/cli.js";
import { CONFIG, project, type Project } from "./spec-support.js";

const TOKEN = "spec-int-admin-token-0123456789abcdef";

interface Obj {
  kind: string;
  metadata: { name: string; namespace: string; revision: number; labels: Record<string, string> };
  spec: Record<string, unknown>;
  status?: { buildState: string };
}

const KINDS = [
  "configmaps",
  "environments",
  "packages",
  "functions",
  "httptriggers",
  "mqtriggers",
  "timetriggers",
  "watchtriggers",
] as const;

const FILES = {
  "specs/deployment.yaml": CONFIG("shop", ["SHOP_REDIS_URL"]),
  "specs/env.yaml": `apiVersion: fizz.dev/v1
kind: Environment
metadata:
  name: python
spec:
  image: fizz/env-python
  poolSize: 0
`,
  "specs/config.yaml": `apiVersion: fizz.dev/v1
kind: ConfigMap
metadata:
  name: settings
spec:
  data:
    mode: fast
    redis-url: \${SHOP_REDIS_URL:-redis://127.0.0.1:6379/0}
`,
  "specs/package.yaml": `apiVersion: fizz.dev/v1
kind: Package
metadata:
  name: app
  labels: { team: web }
spec:
  environment: python
  deployment: { path: ../app }
`,
  "specs/functions.yaml": `apiVersion: fizz.dev/v1
kind: Function
metadata:
  name: hello
spec:
  environment: python
  code: { path: ../hello.py }
  configmaps: [settings]
---
apiVersion: fizz.dev/v1
kind: Function
metadata:
  name: web
spec:
  environment: python
  package: { name: app }
  entrypoint: main.main
  maxInstances: 3
`,
  "specs/triggers.yml": `apiVersion: fizz.dev/v1
kind: HttpTrigger
metadata: { name: hello }
spec: { function: hello, path: /hello, methods: [get] }
---
apiVersion: fizz.dev/v1
kind: MessageQueueTrigger
metadata: { name: orders }
spec: { function: hello, subject: orders.new }
---
apiVersion: fizz.dev/v1
kind: TimeTrigger
metadata: { name: nightly }
spec: { function: web, cron: "0 3 * * *" }
---
apiVersion: fizz.dev/v1
kind: WatchTrigger
metadata: { name: pods }
spec: { function: web, namespace: default, resource: pods, events: [ADDED] }
`,
  "hello.py": "def main():\n    return 'hello'\n",
  "app/main.py": "def main():\n    return 'app v1'\n",
  "app/lib/helper.py": "X = 1\n",
};

describe("fizz spec against a real registry", function () {
  this.timeout(60_000);
  let nats: TestServer;
  let redis: TestServer;
  let registry: RegistryService;
  let url: string;
  let p: Project;

  before(async () => {
    [nats, redis] = await Promise.all([startNats(), startRedis()]);
    p = await project(FILES);
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

  const cli = (...argv: string[]) => fizz(argv, { registry: url }, { env: { FIZZ_TOKEN: TOKEN } });
  const apply = (...more: string[]) => cli("spec", "apply", "-f", p.specs, ...more);

  async function api<T>(path: string): Promise<T> {
    const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    return (await res.json()) as T;
  }
  async function all(): Promise<Map<string, Obj>> {
    const out = new Map<string, Obj>();
    for (const kind of KINDS) {
      const list = await api<{ items: Obj[] }>(`/v1/namespaces/default/${kind}`);
      for (const o of list.items) out.set(`${kind}/${o.metadata.name}`, o);
    }
    return out;
  }
  const revisions = async () =>
    Object.fromEntries([...(await all())].map(([k, o]) => [k, o.metadata.revision]));

  /** Writes the registry answered, by its own request counter: archive uploads and the rest. */
  async function writes(): Promise<{ uploads: number; writes: number }> {
    const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const out = { uploads: 0, writes: 0 };
    for (const line of (await res.text()).split("\n")) {
      const m = /^fizz_registry_http_requests_total\{(.*)\} (\d+)$/.exec(line);
      if (!m) continue;
      const labels = m[1]!;
      if (!/method="(POST|PATCH|DELETE)"/.test(labels)) continue;
      if (labels.includes('route="/v1/namespaces/:ns/archives"')) out.uploads += Number(m[2]);
      else out.writes += Number(m[2]);
    }
    return out;
  }

  it("apply creates every kind in dependency order, labelled with the spec's name", async () => {
    const r = await apply();

    expect(r.stderr).to.equal("");
    expect(r.code).to.equal(0);
    const lines = r.stdout.split("\n");
    expect(lines[3]).to.match(/^created package app \(deployment sha256:[0-9a-f]{12} \(\d+ B\)\)$/);
    expect(lines).to.deep.equal([
      "variables taken from the environment: none; defaults used: SHOP_REDIS_URL",
      "created configmap settings",
      "created environment python",
      lines[3],
      "created function hello",
      "created function web",
      "created httptrigger hello",
      "created messagequeuetrigger orders",
      "created timetrigger nightly",
      "created watchtrigger pods",
      'spec "shop": 9 created, 0 updated, 0 unchanged, 0 deleted',
      "",
    ]);
    const objects = await all();
    expect([...objects.keys()].sort()).to.deep.equal(
      [
        "configmaps/settings",
        "environments/python",
        "packages/app",
        "functions/hello",
        "functions/web",
        "httptriggers/hello",
        "mqtriggers/orders",
        "timetriggers/nightly",
        "watchtriggers/pods",
      ].sort(),
    );
    for (const o of objects.values()) expect(o.metadata.labels["fizz.dev/spec"]).to.equal("shop");
    expect(objects.get("packages/app")!.metadata.labels.team).to.equal("web");
    const hello = objects.get("functions/hello")!;
    const digest = createHash("sha256").update(FILES["hello.py"]).digest("hex");
    expect(hello.spec.code).to.deep.include({ filename: "hello.py", digest: `sha256:${digest}` });
    expect(hello.spec.configmaps).to.deep.equal(["settings"]);
    const web = objects.get("functions/web")!;
    const pkg = objects.get("packages/app")!;
    expect((web.spec.package as { deployment: { digest: string } }).deployment.digest).to.equal(
      (pkg.spec.deployment as { digest: string }).digest,
    );
    expect(objects.get("configmaps/settings")!.spec.data).to.deep.equal({
      mode: "fast",
      "redis-url": "redis://127.0.0.1:6379/0",
    });
    expect(objects.get("httptriggers/hello")!.spec.methods).to.deep.equal(["GET"]);
  });

  it("a second apply reports everything unchanged, bumps no revision and uploads nothing", async () => {
    const before = await revisions();
    const counted = await writes();

    const r = await apply();

    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(
      /^variables taken from the environment: none; defaults used: SHOP_REDIS_URL\n(unchanged \S+ \S+\n){9}spec "shop": 0 created, 0 updated, 9 unchanged, 0 deleted\n$/,
    );
    expect(await revisions()).to.deep.equal(before);
    expect(await writes()).to.deep.equal(counted);
  });

  it("changing one file updates only that object; a changed package directory is uploaded once", async () => {
    const before = await revisions();
    await p.write({ "hello.py": "def main():\n    return 'hello v2'\n" });

    const r = await apply();

    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include("updated function hello (spec.code; revision 2)\n");
    expect(r.stdout).to.include('spec "shop": 0 created, 1 updated, 8 unchanged, 0 deleted\n');
    const after = await revisions();
    expect(after["functions/hello"]).to.equal(before["functions/hello"]! + 1);
    expect({ ...after, "functions/hello": 0 }).to.deep.equal({ ...before, "functions/hello": 0 });
    const code = await fetch(`${url}/v1/namespaces/default/functions/hello/code`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(await code.text()).to.equal("def main():\n    return 'hello v2'\n");

    const counted = await writes();
    await p.write({ "app/main.py": "def main():\n    return 'app v2'\n" });
    const pkg = await apply();
    expect(pkg.code, pkg.stderr).to.equal(0);
    expect(pkg.stdout).to.match(
      /\nupdated package app \(spec.deployment; revision \d+; deployment sha256:/,
    );
    expect((await writes()).uploads).to.equal(counted.uploads + 1);
    const objects = await all();
    const deployment = (objects.get("packages/app")!.spec.deployment as { digest: string }).digest;
    // The registry rolled the function onto the new deployment before answering.
    expect(
      (objects.get("functions/web")!.spec.package as { deployment: { digest: string } }).deployment
        .digest,
    ).to.equal(deployment);
  });

  it("a package and a function using it changed together: the function is updated after the roll-out", async () => {
    const before = await all();
    await p.write({
      "app/main.py": "def main():\n    return 'app v2b'\n",
      "specs/functions.yaml": FILES["specs/functions.yaml"].replace(
        "maxInstances: 3",
        "maxInstances: 4",
      ),
    });

    const r = await apply();

    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(
      /\nupdated package app \(spec.deployment; revision \d+; deployment sha256:/,
    );
    // The roll-out bumped the function once; the planned revision was not taken as stale.
    const web = before.get("functions/web")!.metadata.revision;
    expect(r.stdout).to.include(
      `\nupdated function web (spec.maxInstances; revision ${web + 2})\n`,
    );
    const after = (await all()).get("functions/web")!;
    expect(after.spec.maxInstances).to.equal(4);
  });

  it("--dry-run prints the plan and changes and uploads nothing", async () => {
    const before = await all();
    const counted = await writes();
    await p.write({
      "app/main.py": "def main():\n    return 'app v3'\n",
      "specs/config.yaml": FILES["specs/config.yaml"].replace("mode: fast", "mode: slow"),
      "specs/more.yaml": `apiVersion: fizz.dev/v1
kind: HttpTrigger
metadata: { name: web }
spec: { function: web, prefix: /web }
`,
    });

    const r = await apply("--dry-run");

    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include("update configmap settings: spec.data\n");
    expect(r.stdout).to.include("update package app: spec.deployment\n");
    expect(r.stdout).to.include("create httptrigger web\n");
    expect(r.stdout).to.include("unchanged function hello\n");
    expect(r.stdout).to.include(
      'spec "shop": 1 create, 2 update, 7 unchanged, 0 delete (dry run: nothing was changed)\n',
    );
    expect(await writes()).to.deep.equal(counted);
    expect(await all()).to.deep.equal(before);

    // Declared variables set in the environment are named, their values never printed.
    const withVar = await fizz(
      ["spec", "apply", "-f", p.specs, "--dry-run"],
      { registry: url },
      { env: { FIZZ_TOKEN: TOKEN, SHOP_REDIS_URL: "redis://:hunter2@db:6379/0" } },
    );
    expect(withVar.code, withVar.stderr).to.equal(0);
    expect(withVar.stdout).to.match(/^variables taken from the environment: SHOP_REDIS_URL\n/);
    expect(withVar.stdout + withVar.stderr).not.to.include("hunter2");

    const json = await apply("--dry-run", "-o", "json");
    const plan = JSON.parse(json.stdout) as {
      dryRun: boolean;
      variables: unknown;
      items: Array<Record<string, unknown>>;
    };
    expect(plan.dryRun).to.equal(true);
    expect(plan.variables).to.deep.equal({ fromEnvironment: [], defaulted: ["SHOP_REDIS_URL"] });
    expect(plan.items).to.deep.include({
      action: "update",
      kind: "ConfigMap",
      namespace: "default",
      name: "settings",
      changes: ["spec.data"],
    });

    const applied = await apply("-o", "json");
    expect(applied.code, applied.stderr).to.equal(0);
    const result = JSON.parse(applied.stdout) as { items: Array<{ action: string; name: string }> };
    expect(result.items.filter((i) => i.action !== "unchanged").map((i) => i.name)).to.deep.equal([
      "settings",
      "app",
      "web",
    ]);
  });

  it("--prune deletes only labelled objects the spec dropped; unlabelled ones survive", async () => {
    const manual = await cli(
      "route",
      "create",
      "--name",
      "manual",
      "--function",
      "hello",
      "--url",
      "/manual",
    );
    expect(manual.code, manual.stderr).to.equal(0);
    await p.remove("specs/more.yaml");
    await p.write({
      "specs/triggers.yml": FILES["specs/triggers.yml"].replace(
        /---\napiVersion: fizz.dev\/v1\nkind: MessageQueueTrigger[^]*?---\n/,
        "---\n",
      ),
    });

    const kept = await apply();
    expect(kept.code, kept.stderr).to.equal(0);
    expect(kept.stdout).not.to.match(/^deleted/m);
    expect((await all()).has("mqtriggers/orders")).to.equal(true);

    const pruned = await apply("--prune");

    expect(pruned.code, pruned.stderr).to.equal(0);
    expect(pruned.stdout.split("\n").filter((l) => l.startsWith("deleted"))).to.deep.equal([
      "deleted messagequeuetrigger orders",
      "deleted httptrigger web",
    ]);
    const objects = await all();
    expect(objects.has("mqtriggers/orders")).to.equal(false);
    expect(objects.has("httptriggers/web")).to.equal(false);
    expect(objects.get("httptriggers/manual")?.metadata.labels).to.deep.equal({});
  });

  it("apply refuses to take over an unlabelled object, changing nothing", async () => {
    const before = await all();
    const counted = await writes();
    await p.write({
      "specs/config.yaml": FILES["specs/config.yaml"].replace("mode: fast", "mode: other"),
      "specs/more.yaml": `apiVersion: fizz.dev/v1
kind: HttpTrigger
metadata:
  name: manual
spec: { function: hello, path: /manual }
`,
    });

    const r = await apply();

    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal(
      `${join(p.specs, "more.yaml")}:4: HttpTrigger manual: metadata.name: httptrigger "manual" already exists in namespace "default" without the label fizz.dev/spec=shop; apply does not take over objects it did not create: delete it, or rename this one\n` +
        "Error: the spec has 1 problem; nothing was applied\n",
    );
    expect(await writes()).to.deep.equal(counted);
    expect(await all()).to.deep.equal(before);
  });

  it("uses an identical environment another spec made as it is, refuses a different one, and never deletes it", async () => {
    const other = (poolSize: number) => ({
      "other/fizz-deployment-config.yaml":
        "apiVersion: fizz.dev/v1\nkind: DeploymentConfig\nmetadata: { name: other }\n",
      "other/env.yaml": `apiVersion: fizz.dev/v1
kind: Environment
metadata: { name: python }
spec: { image: fizz/env-python, poolSize: ${poolSize} }
---
apiVersion: fizz.dev/v1
kind: ConfigMap
metadata: { name: other-settings }
spec: { data: { mode: slow } }
`,
    });
    const otherDir = join(p.root, "other");
    const envBefore = (await all()).get("environments/python")!;

    await p.write(other(1));
    const differs = await cli("spec", "apply", "-f", otherDir);
    expect(differs.code).to.equal(1);
    expect(differs.stderr).to.include(
      'Environment python: metadata.name: environment "python" already exists in namespace "default" and belongs to spec "shop"',
    );
    expect((await all()).has("configmaps/other-settings")).to.equal(false);

    await p.write(other(0));
    const same = await cli("spec", "apply", "-f", otherDir);
    expect(same.code, same.stderr).to.equal(0);
    expect(same.stdout).to.include("unchanged environment python\n");
    expect(same.stdout).to.include("created configmap other-settings\n");
    expect((await all()).get("environments/python")).to.deep.equal(envBefore);

    const gone = await cli("spec", "destroy", "-f", otherDir);
    expect(gone.code, gone.stderr).to.equal(0);
    const after = await all();
    expect(after.has("configmaps/other-settings")).to.equal(false);
    expect(after.get("environments/python")).to.deep.equal(envBefore);
    await p.remove("other");
  });

  it("destroy keeps an environment another spec's function uses, says so, and succeeds; once unused, the next destroy deletes it", async () => {
    const specOf = (name: string, fn: string) => ({
      [`${name}/fizz-deployment-config.yaml`]: CONFIG(name),
      [`${name}/objects.yaml`]: `apiVersion: fizz.dev/v1
kind: Environment
metadata: { name: py-shared }
spec: { image: fizz/env-python }
---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: ${fn} }
spec: { environment: py-shared, code: { path: ../hello.py } }
`,
    });
    await p.write({ ...specOf("alpha", "alpha-fn"), ...specOf("beta", "beta-fn") });
    const alpha = join(p.root, "alpha");
    const beta = join(p.root, "beta");
    expect((await cli("spec", "apply", "-f", alpha)).code).to.equal(0);
    const b = await cli("spec", "apply", "-f", beta);
    expect(b.code, b.stderr).to.equal(0);
    expect(b.stdout).to.include("unchanged environment py-shared\n");

    const dry = await cli("spec", "destroy", "-f", alpha, "--dry-run");
    expect(dry.stdout).to.include(
      "keep environment py-shared: used by function beta-fn (not in this spec)\n",
    );
    const a = await cli("spec", "destroy", "-f", alpha);
    expect(a.code, a.stderr).to.equal(0);
    expect(a.stdout).to.equal(
      [
        "deleted function alpha-fn",
        "kept environment py-shared: used by function beta-fn (not in this spec)",
        'spec "alpha": 0 created, 0 updated, 0 unchanged, 1 deleted, 1 kept',
        "",
      ].join("\n"),
    );
    let objects = await all();
    expect(objects.has("functions/alpha-fn")).to.equal(false);
    expect(objects.has("functions/beta-fn")).to.equal(true);
    expect(objects.get("environments/py-shared")!.metadata.labels["fizz.dev/spec"]).to.equal(
      "alpha",
    );

    // Beta never owned py-shared: its destroy leaves it, still labelled alpha.
    const bGone = await cli("spec", "destroy", "-f", beta);
    expect(bGone.code, bGone.stderr).to.equal(0);
    expect(bGone.stdout).not.to.include("py-shared");
    expect((await all()).has("environments/py-shared")).to.equal(true);

    const again = await cli("spec", "destroy", "-f", alpha);
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stdout).to.include("deleted environment py-shared\n");
    objects = await all();
    expect(objects.has("environments/py-shared")).to.equal(false);
    await p.remove("alpha");
    await p.remove("beta");
  });

  it("an invalid spec or a reference to nothing applies nothing", async () => {
    const before = await all();
    const counted = await writes();
    await p.write({
      "specs/more.yaml": `apiVersion: fizz.dev/v1
kind: Function
metadata: { name: ruby }
spec: { environment: ruby, code: { path: ../hello.py } }
`,
    });

    const r = await apply();

    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal(
      `${join(p.specs, "more.yaml")}:4: Function ruby: spec.environment: environment "ruby" is neither in the spec nor in namespace "default" of the registry\n` +
        "Error: the spec has 1 problem; nothing was applied\n",
    );
    await p.write({ "specs/more.yaml": "kind: Function\n" });
    const invalid = await apply();
    expect(invalid.code).to.equal(1);
    expect(invalid.stderr).to.include(
      `${join(p.specs, "more.yaml")}:1: Function: apiVersion: is required`,
    );
    expect(await writes()).to.deep.equal(counted);
    expect(await all()).to.deep.equal(before);
  });

  it("a refused write stops apply, says what was done and what failed; a rerun converges", async () => {
    await p.write({
      "specs/more.yaml": `apiVersion: fizz.dev/v1
kind: ConfigMap
metadata: { name: extra }
spec: { data: { a: "1" } }
---
apiVersion: fizz.dev/v1
kind: HttpTrigger
metadata: { name: clash }
spec: { function: hello, path: /manual }
---
apiVersion: fizz.dev/v1
kind: TimeTrigger
metadata: { name: later }
spec: { function: hello, cron: "@hourly" }
`,
    });

    const r = await apply();

    expect(r.code).to.equal(1);
    expect(r.stdout).to.include("created configmap extra\n");
    expect(r.stdout).not.to.include("later");
    expect(r.stderr).to.match(
      /^Error: create httptrigger clash: spec.path: route .*\/manual conflicts with httptrigger "manual" .*\(ROUTE_CONFLICT\)\nApply stopped there: 2 changes were made before it, 1 more was not tried\. /,
    );
    const objects = await all();
    expect(objects.has("configmaps/extra")).to.equal(true);
    expect(objects.has("timetriggers/later")).to.equal(false);

    expect((await cli("route", "delete", "--name", "manual")).code).to.equal(0);
    const again = await apply();
    expect(again.code, again.stderr).to.equal(0);
    expect(
      again.stdout.split("\n").filter((l) => !/^(unchanged|variables) /.test(l)),
    ).to.deep.equal([
      "created httptrigger clash",
      "created timetrigger later",
      'spec "shop": 2 created, 0 updated, 9 unchanged, 0 deleted',
      "",
    ]);
  });

  it("a route moved from a trigger to a new one listed before it converges in one apply", async () => {
    // a-moved.yaml sorts before triggers.yml: the create of `moved` comes first in the files.
    const triggers = await readFile(join(p.specs, "triggers.yml"), "utf8");
    await p.write({
      "specs/a-moved.yaml": `apiVersion: fizz.dev/v1
kind: HttpTrigger
metadata: { name: moved }
spec: { function: hello, path: /hello, methods: [get] }
`,
      "specs/triggers.yml": triggers.replace("path: /hello,", "path: /hello-old,"),
    });

    const r = await apply();

    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.split("\n").filter((l) => !/^(unchanged|variables) /.test(l))).to.deep.equal([
      "updated httptrigger hello (spec.path; revision 2)",
      "created httptrigger moved",
      'spec "shop": 1 created, 1 updated, 10 unchanged, 0 deleted',
      "",
    ]);
    const objects = await all();
    expect(objects.get("httptriggers/moved")!.spec.path).to.equal("/hello");
    expect(objects.get("httptriggers/hello")!.spec.path).to.equal("/hello-old");

    await p.remove("specs/a-moved.yaml");
    await p.write({ "specs/triggers.yml": triggers });
    const back = await apply("--prune");
    expect(back.code, back.stderr).to.equal(0);
    expect((await all()).get("httptriggers/hello")!.spec.path).to.equal("/hello");
  });

  it("a route moved between two existing triggers converges in one apply, its taker listed first", async () => {
    const chain = await project({ "f.py": "def main():\n    return 'chain'\n" });
    const files = (first: string, second: string) => ({
      "specs/all.yaml": [
        CONFIG("chain"),
        "apiVersion: fizz.dev/v1\nkind: Environment\nmetadata: { name: py, namespace: chain }\nspec: { image: fizz/env-python, poolSize: 0 }\n",
        "apiVersion: fizz.dev/v1\nkind: Function\nmetadata: { name: f, namespace: chain }\nspec: { environment: py, code: { path: ../f.py } }\n",
        `apiVersion: fizz.dev/v1\nkind: HttpTrigger\nmetadata: { name: taker, namespace: chain }\nspec: { function: f, path: ${first} }\n`,
        `apiVersion: fizz.dev/v1\nkind: HttpTrigger\nmetadata: { name: leaver, namespace: chain }\nspec: { function: f, path: ${second} }\n`,
      ].join("---\n"),
    });
    try {
      await chain.write(files("/chain/one", "/chain/two"));
      const made = await cli("spec", "apply", "-f", chain.specs);
      expect(made.code, made.stderr).to.equal(0);
      // taker takes /chain/two, which leaver leaves: leaver's update has to go first.
      await chain.write(files("/chain/two", "/chain/three"));

      const r = await cli("spec", "apply", "-f", chain.specs);

      expect(r.stderr).to.equal("");
      expect(r.code).to.equal(0);
      expect(r.stdout.split("\n").filter((l) => l.startsWith("updated"))).to.deep.equal([
        "updated httptrigger chain/taker (spec.path; revision 2)",
        "updated httptrigger chain/leaver (spec.path; revision 2)",
      ]);
      const routes = await api<{ items: Obj[] }>("/v1/namespaces/chain/httptriggers");
      expect(
        Object.fromEntries(routes.items.map((t) => [t.metadata.name, t.spec.path])),
      ).to.deep.equal({ taker: "/chain/two", leaver: "/chain/three" });
      expect((await cli("spec", "destroy", "-f", chain.specs)).code).to.equal(0);
    } finally {
      await chain.cleanup();
    }
  });

  it("a source package is uploaded once and compared by its canonical digest", async () => {
    await p.write({
      "src/main.py": "def main():\n    return 'built'\n",
      "specs/more.yaml": `apiVersion: fizz.dev/v1
kind: Package
metadata: { name: built }
spec: { environment: python, source: { path: ../src } }
`,
    });
    const counted = await writes();

    // No builder runs in this test: the build stays pending and the wait gives up.
    const r = await apply("--wait-timeout", "1", "--prune");
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(
      /^Error: create package built: package "built" is still pending after 1s\n/,
    );
    expect((await writes()).uploads).to.equal(counted.uploads + 1);
    const pkg = (await all()).get("packages/built")!;
    expect(pkg.status?.buildState).to.equal("pending");

    const again = await apply("--prune");
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stdout).to.include("unchanged package built\n");
    expect((await writes()).uploads).to.equal(counted.uploads + 1);
    expect((await all()).get("packages/built")!.metadata.revision).to.equal(pkg.metadata.revision);
  });

  it("destroy deletes everything labelled with the spec, triggers first, and nothing else", async () => {
    const env = await cli("env", "create", "--name", "py2", "--image", "fizz/env-python");
    expect(env.code, env.stderr).to.equal(0);
    const fn = await cli(
      "fn",
      "create",
      "--name",
      "manual",
      "--env",
      "py2",
      "--code",
      join(p.root, "hello.py"),
      "--route",
      "/manual",
    );
    expect(fn.code, fn.stderr).to.equal(0);

    const dry = await cli("spec", "destroy", "-f", p.specs, "--dry-run");
    expect(dry.code, dry.stderr).to.equal(0);
    expect(dry.stdout).to.match(/^delete watchtrigger pods\n/);
    expect((await all()).has("functions/hello")).to.equal(true);

    const r = await cli("spec", "destroy", "-f", p.specs);

    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal(
      [
        "deleted watchtrigger pods",
        "deleted timetrigger nightly",
        "deleted httptrigger hello",
        "deleted function hello",
        "deleted function web",
        "deleted package app",
        "deleted package built",
        "deleted environment python",
        "deleted configmap settings",
        'spec "shop": 0 created, 0 updated, 0 unchanged, 9 deleted',
        "",
      ].join("\n"),
    );
    const left = [...(await all()).keys()].sort();
    expect(left).to.deep.equal(["environments/py2", "functions/manual", "httptriggers/manual"]);
  });

  it("the guestbook example validates and plans, creating its 12 objects, without a write", async () => {
    const specs = join(import.meta.dirname, "..", "..", "examples", "guestbook", "specs");
    const counted = await writes();

    const valid = await cli("spec", "validate", "-f", specs);
    expect(valid.stderr).to.equal("");
    expect(valid.code).to.equal(0);
    expect(valid.stdout).to.equal(
      'spec "guestbook" is valid: 12 objects in 5 files; variables used: GUESTBOOK_REDIS_URL (its default)\n',
    );

    const plan = await cli("spec", "apply", "-f", specs, "--dry-run");
    expect(plan.code, plan.stderr).to.equal(0);
    expect(plan.stdout).to.equal(
      [
        "variables taken from the environment: none; defaults used: GUESTBOOK_REDIS_URL",
        "create configmap guestbook",
        "create environment python",
        "create environment nodejs",
        "create package guestbook-node",
        "create function guestbook-node-get",
        "create function guestbook-node-add",
        "create function guestbook-get",
        "create function guestbook-add",
        "create httptrigger guestbook-node-get",
        "create httptrigger guestbook-node-add",
        "create httptrigger guestbook-get",
        "create httptrigger guestbook-add",
        'spec "guestbook": 12 create, 0 update, 0 unchanged, 0 delete (dry run: nothing was changed)',
        "",
      ].join("\n"),
    );
    expect(await writes()).to.deep.equal(counted);
  });

  it("a bulk spec applies with writes in flight together: every trigger after its function, lines in plan order, a rerun unchanged", async () => {
    const n = 40;
    const bulk = await project({ "f.py": "def main():\n    return 'bulk'\n" });
    try {
      const docs = [
        CONFIG("bulk"),
        "apiVersion: fizz.dev/v1\nkind: Environment\nmetadata: { name: py, namespace: bulk }\nspec: { image: fizz/env-python, poolSize: 0 }\n",
      ];
      // Triggers listed first in the files: the plan, not the files, decides the order.
      for (let i = 0; i < n; i++)
        docs.push(
          `apiVersion: fizz.dev/v1\nkind: HttpTrigger\nmetadata: { name: b-${i}, namespace: bulk }\nspec: { function: b-${i}, path: /bulk/${i} }\n`,
        );
      for (let i = 0; i < n; i++)
        docs.push(
          `apiVersion: fizz.dev/v1\nkind: Function\nmetadata: { name: b-${i}, namespace: bulk }\nspec: { environment: py, code: { path: ../f.py } }\n`,
        );
      await bulk.write({ "specs/all.yaml": docs.join("---\n") });
      const counted = await writes();

      const r = await cli("spec", "apply", "-f", bulk.specs, "--parallel", "8");

      expect(r.stderr).to.equal("");
      expect(r.code).to.equal(0);
      const names = Array.from({ length: n }, (_, i) => `bulk/b-${i}`);
      expect(r.stdout.split("\n")).to.deep.equal([
        "created environment bulk/py",
        ...names.map((x) => `created function ${x}`),
        ...names.map((x) => `created httptrigger ${x}`),
        `spec "bulk": ${2 * n + 1} created, 0 updated, 0 unchanged, 0 deleted`,
        "",
      ]);
      expect((await writes()).writes - counted.writes).to.equal(2 * n + 1);
      const routes = await api<{ items: Obj[] }>("/v1/namespaces/bulk/httptriggers");
      expect(routes.items).to.have.length(n);

      const again = await cli("spec", "apply", "-f", bulk.specs);
      expect(again.code, again.stderr).to.equal(0);
      expect(again.stdout).to.include(
        `spec "bulk": 0 created, 0 updated, ${2 * n + 1} unchanged, 0 deleted\n`,
      );

      const gone = await cli("spec", "destroy", "-f", bulk.specs);
      expect(gone.code, gone.stderr).to.equal(0);
      expect(gone.stdout).to.include(`${2 * n + 1} deleted\n`);
      const fns = await api<{ items: Obj[] }>("/v1/namespaces/bulk/functions");
      expect(fns.items).to.deep.equal([]);
    } finally {
      await bulk.cleanup();
    }
  });
});
