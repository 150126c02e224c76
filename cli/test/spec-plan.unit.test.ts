/**
 * Planning: a spec against what the registry holds (as its lists answer it). Defaults do not
 * count as changes, code counts by digest, and pruning only ever picks objects labelled with
 * this spec's name.
 */
import { createHash } from "node:crypto";
import { expect } from "chai";
import { loadSpec, type LoadedSpec } from "../src/spec/load.js";
import { keepWhatIsUsed } from "../src/spec/keep.js";
import { computePlan } from "../src/spec/plan.js";
import { RegistryState, type StoredObject } from "../src/spec/state.js";
import { CONFIG, project, type Project } from "./spec-support.js";

const CODE = "def main():\n    return 'hi'\n";
const DIGEST = `sha256:${createHash("sha256").update(CODE).digest("hex")}`;

function stored(
  kind: string,
  name: string,
  spec: Record<string, unknown>,
  labels: Record<string, string> = { "fizz.dev/spec": "demo" },
): StoredObject {
  return {
    apiVersion: "fizz.dev/v1",
    kind,
    metadata: { namespace: "default", name, revision: 4, labels },
    spec,
  };
}

const SPEC = `apiVersion: fizz.dev/v1
kind: Environment
metadata: { name: python }
spec: { image: fizz/env-python }
---
apiVersion: fizz.dev/v1
kind: Function
metadata: { name: hello }
spec:
  environment: python
  code: { path: ../hello.py }
---
apiVersion: fizz.dev/v1
kind: HttpTrigger
metadata: { name: hello }
spec: { function: hello, path: /hello, methods: [get], host: Example.COM }
`;

/** What the registry answers for SPEC, defaults filled in. */
const STORED = {
  env: stored("Environment", "python", { image: "fizz/env-python", poolSize: 3 }),
  fn: stored("Function", "hello", {
    environment: "python",
    code: { filename: "hello.py", digest: DIGEST, size: CODE.length },
    minInstances: 0,
    maxInstances: 10,
    timeoutSeconds: 60,
    idleTimeoutSeconds: 120,
  }),
  route: stored("HttpTrigger", "hello", {
    function: "hello",
    path: "/hello",
    methods: ["GET"],
    host: "example.com",
  }),
};

function state(extra: Record<string, StoredObject[]> = {}): RegistryState {
  return new RegistryState(
    new Map<string, StoredObject[]>([
      ["environments/default", [STORED.env]],
      ["functions/default", [STORED.fn]],
      ["httptriggers/default", [STORED.route]],
      ...Object.entries(extra),
    ]),
  );
}

describe("fizz spec: planning against the registry's objects", () => {
  let p: Project;
  let spec: LoadedSpec;
  const load = async () => {
    const r = await loadSpec({ dirs: [p.specs], env: {}, namespace: "default", codeMaxBytes: 1e6 });
    expect(r.problems).to.deep.equal([]);
    return r.spec as LoadedSpec;
  };
  beforeEach(async () => {
    p = await project({
      "specs/config.yaml": CONFIG("demo"),
      "specs/a.yaml": SPEC,
      "hello.py": CODE,
    });
    spec = await load();
  });
  afterEach(() => p.cleanup());

  const summary = (items: ReturnType<typeof computePlan>) =>
    items.map(
      (i) => `${i.action} ${i.kind} ${i.name}${i.changes.length ? ` ${i.changes.join(",")}` : ""}`,
    );

  it("plans nothing for objects equal to the spec once defaults and normalisation apply", () => {
    expect(summary(computePlan(spec, state(), new Map(), undefined))).to.deep.equal([
      "unchanged Environment python",
      "unchanged Function hello",
      "unchanged HttpTrigger hello",
    ]);
  });

  it("names exactly the fields that differ: code by digest, a dropped field, labels", async () => {
    await p.write({
      "hello.py": `${CODE}# v2\n`,
      "specs/a.yaml": SPEC.replace(
        "spec: { image: fizz/env-python }",
        "spec: { image: fizz/env-python, poolSize: 1 }",
      ),
    });
    spec = await load();
    const fn = { ...STORED.fn, spec: { ...STORED.fn.spec, entrypoint: "main" } };
    const route = { ...STORED.route, metadata: { ...STORED.route.metadata, labels: {} } };
    const plan = computePlan(
      spec,
      new RegistryState(
        new Map([
          ["environments/default", [STORED.env]],
          ["functions/default", [fn]],
          ["httptriggers/default", [route]],
        ]),
      ),
      new Map(),
      undefined,
    );
    expect(summary(plan)).to.deep.equal([
      "update Environment python spec.poolSize",
      "update Function hello spec.entrypoint,spec.code",
      "update HttpTrigger hello labels",
    ]);
  });

  it("creates what the registry lacks", () => {
    const empty = new RegistryState(new Map());
    expect(summary(computePlan(spec, empty, new Map(), undefined))).to.deep.equal([
      "create Environment python",
      "create Function hello",
      "create HttpTrigger hello",
    ]);
  });

  it("within a kind, updates run before creates, so a route moved to a new trigger is free when it is created", async () => {
    // The new trigger comes first in the file and takes /hello, which the existing one gives up.
    await p.write({
      "specs/a.yaml": SPEC.replace(
        "---\napiVersion: fizz.dev/v1\nkind: HttpTrigger",
        `---
apiVersion: fizz.dev/v1
kind: Environment
metadata: { name: node }
spec: { image: fizz/env-node }
---
apiVersion: fizz.dev/v1
kind: HttpTrigger
metadata: { name: hello-v2 }
spec: { function: hello, path: /hello, methods: [get], host: example.com }
---
apiVersion: fizz.dev/v1
kind: HttpTrigger`,
      ).replace(
        "path: /hello, methods: [get], host: Example.COM",
        "path: /hello-v1, methods: [get], host: Example.COM",
      ),
    });
    spec = await load();
    expect(summary(computePlan(spec, state(), new Map(), undefined))).to.deep.equal([
      "unchanged Environment python",
      "create Environment node",
      "unchanged Function hello",
      "update HttpTrigger hello spec.path",
      "create HttpTrigger hello-v2",
    ]);
  });

  it("prunes only objects labelled with this spec: triggers first, the rest after the writes", () => {
    const mine = (kind: string, name: string, spec: Record<string, unknown> = {}) =>
      stored(kind, name, spec);
    const plan = computePlan(
      spec,
      state({
        "functions/default": [
          STORED.fn,
          mine("Function", "old"),
          stored("Function", "theirs", {}, { "fizz.dev/spec": "other" }),
          stored("Function", "manual", {}, {}),
        ],
        "mqtriggers/default": [
          mine("MessageQueueTrigger", "old-mq"),
          stored("MessageQueueTrigger", "manual-mq", {}, { team: "x" }),
        ],
        "configmaps/default": [mine("ConfigMap", "old-cm")],
      }),
      new Map(),
      ["default"],
    );
    expect(summary(plan)).to.deep.equal([
      "delete MessageQueueTrigger old-mq",
      "unchanged Environment python",
      "unchanged Function hello",
      "unchanged HttpTrigger hello",
      "delete Function old",
      "delete ConfigMap old-cm",
    ]);
  });

  it("pruning keeps what objects outside the spec still use, and what a kept object uses, and says why", () => {
    const mine = (kind: string, name: string, spec: Record<string, unknown> = {}) =>
      stored(kind, name, spec);
    const theirs = (kind: string, name: string, spec: Record<string, unknown>) =>
      stored(kind, name, spec, { "fizz.dev/spec": "other" });
    const registry = state({
      "environments/default": [STORED.env, mine("Environment", "node", { image: "fizz/env-node" })],
      "functions/default": [
        STORED.fn,
        mine("Function", "old", { environment: "node" }),
        mine("Function", "gone", { environment: "node" }),
        theirs("Function", "uses-cm", { environment: "python", configmaps: ["shared-cm"] }),
      ],
      "timetriggers/default": [theirs("TimeTrigger", "cron", { function: "old" })],
      "configmaps/default": [mine("ConfigMap", "shared-cm"), mine("ConfigMap", "unused-cm")],
    });
    const plan = keepWhatIsUsed(
      computePlan(spec, registry, new Map(), ["default"]),
      registry,
      "demo",
      ["default"],
    );
    expect(
      plan.map((i) => `${i.action} ${i.kind} ${i.name}${i.reason ? `: ${i.reason}` : ""}`),
    ).to.deep.equal([
      "unchanged Environment python",
      "unchanged Function hello",
      "unchanged HttpTrigger hello",
      "delete Function gone",
      "keep Function old: used by timetrigger cron (not in this spec)",
      "keep Environment node: used by function old (kept too)",
      "delete ConfigMap unused-cm",
      "keep ConfigMap shared-cm: used by function uses-cm (not in this spec)",
    ]);
  });
});
