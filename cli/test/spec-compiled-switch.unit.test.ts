/**
 * An environment switched to a compiled runtime while functions run single source files on it:
 * the registry refuses the switch while they do, so the plan is refused before any write, with
 * a stable code, naming the environment, the functions and what to do instead.
 */
import { expect } from "chai";
import { checkCompiledSwitches, COMPILED_SWITCH_BLOCKED } from "../src/spec/compiled-switch.js";
import { loadSpec, type LoadedSpec } from "../src/spec/load.js";
import { computePlan } from "../src/spec/plan.js";
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

  async function plan(files: string, fns: StoredObject[]) {
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
    const items = computePlan(r.spec as LoadedSpec, state, new Map(), undefined);
    return checkCompiledSwitches(items, state);
  }

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
    expect(text).to.include('"manual" is not in this spec: move it to a source package');
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
