/**
 * What `fizz spec validate` refuses about compiled runtimes (compiled-switch.ts compiledRefusals):
 * apply's own refusals, planned without packing unless a refusal could hang on a package's digest,
 * and offline only what needs no stored object.
 */
import { expect } from "chai";
import { freePort } from "@fizz/testkit";
import {
  CODE_NEEDS_PACKAGE,
  COMPILED_SWITCH_BLOCKED,
  compiledRefusals,
} from "../src/spec/compiled-switch.js";
import type { SpecObject } from "../src/spec/documents.js";
import type { PackedArchive } from "../src/spec/files.js";
import { loadSpec, type LoadedSpec } from "../src/spec/load.js";
import { RegistryState, type StoredObject } from "../src/spec/state.js";
import { CONFIG, doc, project, type Project } from "./spec-support.js";
import { fizz } from "./support/cli.js";
import { FakeServer } from "./support/fake-server.js";

const stored = (kind: string, name: string, spec: Record<string, unknown>) =>
  ({
    apiVersion: "fizz.dev/v1",
    kind,
    metadata: { namespace: "default", name, revision: 2, labels: { "fizz.dev/spec": "demo" } },
    spec,
  }) as StoredObject;

const CODE = { filename: "hello.js", digest: "sha256:00", size: 10 };
const GO_APP = doc("Environment", "app", "  image: fizz/env-go\n");
/** A gzip header (so the spec loads) over a body that does not inflate (so packing fails). */
const BROKEN_GZIP = Buffer.concat([
  Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3]),
  Buffer.alloc(64, 0xff),
]);
const CODE_ON_APP = doc("Function", "hello", "  environment: app\n  code: { path: ../hello.js }\n");

describe("fizz spec validate: refusals about compiled runtimes", () => {
  let p: Project;
  afterEach(() => p.cleanup());

  async function load(files: string): Promise<LoadedSpec> {
    p = await project({
      "specs/config.yaml": CONFIG("demo"),
      "specs/a.yaml": files,
      "src/main.go": "package main\n",
      "hello.js": "module.exports = () => 'hi';\n",
    });
    const r = await loadSpec({ dirs: [p.specs], env: {}, namespace: "default", codeMaxBytes: 1e6 });
    expect(r.problems).to.deep.equal([]);
    return r.spec as LoadedSpec;
  }
  const noPacking = () => Promise.reject(new Error("packed"));

  it("offline: refuses a function with spec.code on an environment the spec makes compiled, with its own code", async () => {
    const spec = await load(`${GO_APP}${CODE_ON_APP}`);
    const problems = await compiledRefusals(spec, undefined, noPacking);
    expect(problems).to.have.length(1);
    expect(problems[0]).to.include({
      kind: "Function",
      name: "hello",
      field: "spec.code",
      code: CODE_NEEDS_PACKAGE,
    });
    expect(problems[0]!.message).to.include(
      'environment "app" runs go, which is compiled and runs no single source file (spec.code)',
    );
    // An environment the spec does not hold is the registry's to say: nothing offline.
    const elsewhere = await load(CODE_ON_APP);
    expect(await compiledRefusals(elsewhere, undefined, noPacking)).to.deep.equal([]);
  });

  it("offline: a refusal still says the registry was not checked, as apply prints its warnings before refusing", async () => {
    await load(`${GO_APP}${CODE_ON_APP}`);
    const closed = `http://127.0.0.1:${await freePort()}`;
    const r = await fizz(["spec", "validate", "-f", p.specs], { registry: closed });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include("warning: not checked against the registry (cannot reach");
    expect(r.stderr).to.match(/Function hello: spec\.code: .*\(CODE_NEEDS_PACKAGE\)\n/);
    expect(r.stderr).to.include("apply would refuse to run");
  });

  it("against the registry: only reads, and a package it packs that cannot be packed fails as validate, not apply", async () => {
    const node = doc("Environment", "node", "  image: fizz/env-node\n");
    const away = doc("Function", "hello", "  environment: node\n  code: { path: ../hello.js }\n");
    const pkg = doc(
      "Package",
      "hello-go",
      "  environment: app\n  source: { path: ../bad.tar.gz }\n",
    );
    await load(`${GO_APP}${node}${away}`);
    await p.write({ "specs/a.yaml": `${GO_APP}${node}${away}${pkg}`, "bad.tar.gz": BROKEN_GZIP });
    const registry = await FakeServer.start();
    try {
      for (const kind of [
        "watchtriggers",
        "timetriggers",
        "mqtriggers",
        "httptriggers",
        "configmaps",
        "packages",
      ])
        registry.on("GET", `/v1/namespaces/default/${kind}?limit=500`, { json: { items: [] } });
      registry.on("GET", "/v1/namespaces/default/environments?limit=500", {
        json: { items: [stored("Environment", "app", { image: "fizz/env-node" })] },
      });
      registry.on("GET", "/v1/namespaces/default/functions?limit=500", {
        json: { items: [stored("Function", "hello", { environment: "app", code: CODE })] },
      });
      const r = await fizz(["spec", "validate", "-f", p.specs], { registry: registry.url });
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/Package hello-go: spec\.source\.path: /);
      expect(r.stderr).to.include("apply would refuse to run");
      expect(r.stderr).not.to.include("nothing was applied");
      expect(registry.requests.map((q) => q.method)).to.satisfy(
        (m: string[]) => m.length > 0 && m.every((x) => x === "GET"),
      );
    } finally {
      await registry.close();
    }
  });

  it("against the registry: refuses the switch apply refuses, at the environment's spec.image", async () => {
    const pkg = doc("Package", "hello-go", "  environment: app\n  deployment: { path: ../src }\n");
    const fn = doc("Function", "hello", "  environment: app\n  package: { name: hello-go }\n");
    const spec = await load(`${GO_APP}${pkg}${fn}`);
    const state = new RegistryState(
      new Map([
        ["environments/default", [stored("Environment", "app", { image: "fizz/env-node" })]],
        ["functions/default", [stored("Function", "hello", { environment: "app", code: CODE })]],
      ]),
    );
    const problems = await compiledRefusals(spec, state, noPacking);
    expect(problems.map((x) => `${x.kind} ${x.name} ${x.field} ${x.code}`)).to.deep.equal([
      `Environment app spec.image ${COMPILED_SWITCH_BLOCKED}`,
    ]);
  });

  it("against the registry: packs only to clear a refusal that hangs on a package being rebuilt, and lets an unchanged one through", async () => {
    const node = doc("Environment", "node", "  image: fizz/env-node\n");
    const away = doc("Function", "hello", "  environment: node\n  code: { path: ../hello.js }\n");
    const pkg = doc("Package", "hello-go", "  environment: app\n  source: { path: ../src }\n");
    const spec = await load(`${GO_APP}${node}${away}${pkg}`);
    const pkgObj = spec.objects.find((o) => o.plural === "packages")!;
    const state = (digest: string) =>
      new RegistryState(
        new Map([
          ["environments/default", [stored("Environment", "app", { image: "fizz/env-node" })]],
          ["functions/default", [stored("Function", "hello", { environment: "app", code: CODE })]],
          [
            "packages/default",
            [stored("Package", "hello-go", { ...pkgObj.spec, source: { digest } })],
          ],
        ]),
      );
    let packs = 0;
    const pack = () => {
      packs++;
      return Promise.resolve(
        new Map<SpecObject, PackedArchive>([[pkgObj, { digest: "sha256:aa" } as PackedArchive]]),
      );
    };
    // The archive is what the registry holds: no build, the switch waits for the function.
    expect(await compiledRefusals(spec, state("sha256:aa"), pack)).to.deep.equal([]);
    expect(packs).to.equal(1);
    // Changed: built in this run by the old runtime's builder, so refused as apply does.
    const changed = await compiledRefusals(spec, state("sha256:bb"), pack);
    expect(changed.map((x) => x.code)).to.deep.equal([COMPILED_SWITCH_BLOCKED]);
    expect(changed[0]!.message).to.include('packages "hello-go" of "app" are built in this run');
    // Nothing refused without the digests: nothing packed.
    packs = 0;
    const interpreted = await load(`${node}${away}${pkg}`);
    expect(await compiledRefusals(interpreted, state("sha256:bb"), pack)).to.deep.equal([]);
    expect(packs).to.equal(0);
  });

  it("against the registry: a package stored with a deployment that the spec gives a source counts as rebuilt before packing", async () => {
    // The registry builds it (a source where there was none), so apply refuses the switch; the
    // plan without digests saw no spec.source change (no stored digest, none packed) and let
    // validate pass without packing.
    const node = doc("Environment", "node", "  image: fizz/env-node\n");
    const away = doc("Function", "hello", "  environment: node\n  code: { path: ../hello.js }\n");
    const pkg = doc("Package", "hello-go", "  environment: app\n  source: { path: ../src }\n");
    const spec = await load(`${GO_APP}${node}${away}${pkg}`);
    const pkgObj = spec.objects.find((o) => o.plural === "packages")!;
    const state = new RegistryState(
      new Map([
        ["environments/default", [stored("Environment", "app", { image: "fizz/env-node" })]],
        ["functions/default", [stored("Function", "hello", { environment: "app", code: CODE })]],
        [
          "packages/default",
          [
            stored("Package", "hello-go", {
              environment: "app",
              deployment: { digest: "sha256:dd" },
            }),
          ],
        ],
      ]),
    );
    let packs = 0;
    const pack = () => {
      packs++;
      return Promise.resolve(
        new Map<SpecObject, PackedArchive>([[pkgObj, { digest: "sha256:aa" } as PackedArchive]]),
      );
    };
    const problems = await compiledRefusals(spec, state, pack);
    expect(problems.map((x) => `${x.kind} ${x.name} ${x.field} ${x.code}`)).to.deep.equal([
      `Environment app spec.image ${COMPILED_SWITCH_BLOCKED}`,
    ]);
    expect(packs).to.equal(1);
  });
});
