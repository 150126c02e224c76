/**
 * An environment switched to a compiled runtime while functions run single source files on it:
 * the registry refuses the switch while they do, so the plan is refused before any write, with
 * a stable code, naming the environment, the functions and what to do instead.
 */
import { expect } from "chai";
import {
  CODE_NEEDS_PACKAGE,
  COMPILED_SWITCH_BLOCKED,
  orderCompiledSwitches,
} from "../src/spec/compiled-switch.js";
import { keepWhatIsUsed } from "../src/spec/keep.js";
import { loadSpec, type LoadedSpec } from "../src/spec/load.js";
import { computePlan, type PlanItem } from "../src/spec/plan.js";
import { formatProblem } from "../src/spec/problems.js";
import { RegistryState, type StoredObject } from "../src/spec/state.js";
import { CONFIG, doc, project, type Project } from "./spec-support.js";

const stored = (kind: string, name: string, spec: Record<string, unknown>, mine = true) =>
  ({
    apiVersion: "fizz.dev/v1",
    kind,
    metadata: {
      namespace: "default",
      name,
      revision: 2,
      labels: mine ? { "fizz.dev/spec": "demo" } : {},
    },
    spec,
  }) as StoredObject;

const CODE = { filename: "hello.js", digest: "sha256:00", size: 10 };
const ENV = (image: string) => doc("Environment", "app", `  image: ${image}\n`);
const PKG = doc("Package", "hello-go", "  environment: app\n  source: { path: ../src }\n");
const FN_PKG = doc("Function", "hello", "  environment: app\n  package: { name: hello-go }\n");

describe("fizz spec: an environment switched to a compiled runtime", () => {
  let p: Project;
  afterEach(() => p.cleanup());

  async function order(files: string, fns: StoredObject[], prune = false) {
    p = await project({
      "specs/config.yaml": CONFIG("demo"),
      "specs/a.yaml": files,
      "src/main.go": "package main\n",
      "hello.js": "module.exports = () => 'hi';\n",
    });
    const r = await loadSpec({ dirs: [p.specs], env: {}, namespace: "default", codeMaxBytes: 1e6 });
    expect(r.problems).to.deep.equal([]);
    const state = new RegistryState(
      new Map([
        ["environments/default", [stored("Environment", "app", { image: "fizz/env-node" })]],
        ["functions/default", fns],
      ]),
    );
    const ns = prune ? ["default"] : undefined;
    const items = computePlan(r.spec as LoadedSpec, state, new Map(), ns);
    return orderCompiledSwitches(keepWhatIsUsed(items, state, "demo", ["default"]), state);
  }
  const plan = async (files: string, fns: StoredObject[]) => (await order(files, fns)).problems;
  const lines = (items: PlanItem[]) => items.map((i) => `${i.action} ${i.kind} ${i.name}`);

  it("refuses a switch in place while its functions move from spec.code to its packages: no order converges", async () => {
    const problems = await plan(`${ENV("fizz/env-go")}${PKG}${FN_PKG}`, [
      stored("Function", "hello", { environment: "app", code: CODE }),
    ]);
    expect(problems).to.have.length(1);
    const [problem] = problems;
    expect(problem).to.include({
      kind: "Environment",
      name: "app",
      field: "spec.image",
      code: COMPILED_SWITCH_BLOCKED,
    });
    const text = formatProblem(problem!);
    expect(text).to.match(/^.*a\.yaml:\d+: Environment app: spec\.image: /);
    expect(text).to.include('environment "app" cannot be switched to go (compiled) in place');
    expect(text).to.include('functions "hello" run single source files (spec.code)');
    expect(text).to.include('give the go runtime a new environment (e.g. "app-go")');
    expect(text).to.match(/\(COMPILED_SWITCH_BLOCKED\)$/);
  });

  it("names functions outside the spec that block the switch, and those keeping spec.code", async () => {
    const keep = doc("Function", "kept", "  environment: app\n  code: { path: ../hello.js }\n");
    const problems = await plan(`${ENV("fizz/env-go")}${keep}`, [
      stored("Function", "kept", { environment: "app", code: CODE }),
      stored("Function", "manual", { environment: "app", code: CODE }, false),
    ]);
    expect(problems).to.have.length(1);
    const text = problems[0]!.message;
    expect(text).to.include('functions "kept", "manual" run single source files');
    expect(text).to.include('"kept" keep spec.code in this spec, which go cannot run');
    expect(text).to.include(
      '"manual" is not in this spec (or kept by --prune): move it to a source package',
    );
  });

  it("moves a switch after the functions leaving the environment, so it converges in one apply", async () => {
    const node = doc("Environment", "node", "  image: fizz/env-node\n");
    const away = doc("Function", "hello", "  environment: node\n  code: { path: ../hello.js }\n");
    const route = doc("HttpTrigger", "hello", "  function: hello\n  path: /hello\n");
    const files = `${ENV("fizz/env-go")}${node}${away}${route}`;
    const hello = stored("Function", "hello", { environment: "app", code: CODE });
    const moved = await order(files, [hello]);
    expect(moved.problems).to.deep.equal([]);
    expect(lines(moved.plan)).to.deep.equal([
      "create Environment node",
      "update Function hello",
      "update Environment app",
      "create HttpTrigger hello",
    ]);
    // A pruned one is deleted after the triggers are written: the switch waits for that too.
    const old = stored("Function", "old", { environment: "app", code: CODE });
    const pruned = await order(files, [hello, old], true);
    expect(pruned.problems).to.deep.equal([]);
    expect(lines(pruned.plan)).to.deep.equal([
      "create Environment node",
      "update Function hello",
      "create HttpTrigger hello",
      "delete Function old",
      "update Environment app",
    ]);
  });

  it("refuses a switch that could wait for the functions leaving if a package of it is built in the same run", async () => {
    const node = doc("Environment", "node", "  image: fizz/env-node\n");
    const away = doc("Function", "hello", "  environment: node\n  code: { path: ../hello.js }\n");
    const out = await order(`${ENV("fizz/env-go")}${node}${away}${PKG}`, [
      stored("Function", "hello", { environment: "app", code: CODE }),
    ]);
    expect(out.problems).to.have.length(1);
    expect(out.problems[0]!.message).to.include(
      '"hello" leave it in this spec, and the switch could wait for them, but packages "hello-go" of "app" are built in this run',
    );
  });

  it("counts a function the spec writes with spec.code onto the switched environment as blocking it", async () => {
    const node = doc("Environment", "node", "  image: fizz/env-node\n");
    const away = doc("Function", "hello", "  environment: node\n  code: { path: ../hello.js }\n");
    const added = doc("Function", "added", "  environment: app\n  code: { path: ../hello.js }\n");
    const out = await order(`${ENV("fizz/env-go")}${node}${away}${added}`, [
      stored("Function", "hello", { environment: "app", code: CODE }),
    ]);
    expect(out.problems).to.have.length(1);
    expect(out.problems[0]!.message).to.include(
      '"added" keep spec.code in this spec, which go cannot run',
    );
  });

  it("refuses up front a function written with spec.code onto an environment compiled after the plan, where the registry would refuse it mid-apply", async () => {
    const added = doc("Function", "added", "  environment: app\n  code: { path: ../hello.js }\n");
    // Switched by this spec, no stored single-file function on it: the switch alone is fine.
    const switched = await order(`${ENV("fizz/env-go")}${added}`, []);
    expect(switched.problems).to.have.length(1);
    expect(switched.problems[0]).to.include({
      kind: "Function",
      name: "added",
      field: "spec.code",
      code: CODE_NEEDS_PACKAGE,
    });
    expect(switched.problems[0]!.message).to.include(
      'environment "app" runs go (after this apply), which is compiled',
    );
    // Created compiled by this spec.
    const goEnv = doc("Environment", "gone", "  image: fizz/env-go\n");
    const onNew = doc("Function", "added", "  environment: gone\n  code: { path: ../hello.js }\n");
    const created = await order(`${goEnv}${onNew}`, []);
    expect(created.problems.map((x) => `${x.name} ${x.field} ${x.code}`)).to.deep.equal([
      `added spec.code ${CODE_NEEDS_PACKAGE}`,
    ]);
  });

  it("lets a switch wait for the functions leaving when a package of it is written without a build (a deployment)", async () => {
    const node = doc("Environment", "node", "  image: fizz/env-node\n");
    const away = doc("Function", "hello", "  environment: node\n  code: { path: ../hello.js }\n");
    const deployed = doc(
      "Package",
      "hello-go",
      "  environment: app\n  deployment: { path: ../src }\n",
    );
    const out = await order(`${ENV("fizz/env-go")}${node}${away}${deployed}`, [
      stored("Function", "hello", { environment: "app", code: CODE }),
    ]);
    expect(out.problems).to.deep.equal([]);
    expect(lines(out.plan)).to.deep.equal([
      "create Environment node",
      "create Package hello-go",
      "update Function hello",
      "update Environment app",
    ]);
  });

  it("lets a switch through when no function runs spec.code on the environment", async () => {
    expect(
      await plan(`${ENV("fizz/env-go")}${PKG}`, [
        stored("Function", "other", { environment: "elsewhere", code: CODE }),
        stored("Function", "built", { environment: "app", package: { name: "hello-go" } }),
      ]),
    ).to.deep.equal([]);
  });

  it("lets an update to an interpreted runtime through, single-file functions and all", async () => {
    expect(
      await plan(ENV("fizz/env-python"), [
        stored("Function", "hello", { environment: "app", code: CODE }),
      ]),
    ).to.deep.equal([]);
  });
});
