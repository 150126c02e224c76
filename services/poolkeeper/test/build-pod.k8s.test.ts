import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { jetstream } from "@nats-io/jetstream";
import { Codecs, type ArchiveRef, type BuildReport } from "@fizz/events";
import { serve, silentLogger } from "@fizz/kit";
import { extractArchive, packDirectory } from "@fizz/kit/archive";
import { startProcnode, type Procnode } from "@fizz/procnode";
import { waitFor } from "@fizz/testkit";
import type { V1Pod } from "@kubernetes/client-node";
import { expect } from "chai";
import { ensureBuildQueue } from "../src/build/queue";
import { BUILDER_SELECTOR } from "../src/build/pod-runner-pod";
import { environment } from "./harness";
import { KubeHarness, NS } from "./kube-harness";

const MS_LOCK = {
  name: "uses-ms",
  version: "1.0.0",
  lockfileVersion: 3,
  requires: true,
  packages: {
    "": { name: "uses-ms", version: "1.0.0", dependencies: { ms: "2.1.3" } },
    "node_modules/ms": {
      version: "2.1.3",
      resolved: "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz",
      integrity:
        "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==",
    },
  },
};

/**
 * Package builds on the kubernetes backend: the poolkeeper (as the fizz-poolkeeper service
 * account of k8s/rbac.yaml) runs each build in a fresh builder pod on a real kube-apiserver
 * (k8s-lite), procnode runs the pod (runtimes/builder/server.mjs for fizz/builder-node), real NATS
 * with JetStream carries the build queue and the archive store, and the test plays the registry.
 */
describe("builder pods (kubernetes backend, k8s-lite + procnode)", function () {
  this.timeout(300_000);
  const h = new KubeHarness();
  let node: Procnode | undefined;
  const reports: BuildReport[] = [];
  /** Every builder pod the test saw while builds ran, as the apiserver stored it. */
  const seen = new Map<string, V1Pod>();
  let watching = true;
  let revision = 0;
  let dir = "";

  const builderPods = async () =>
    (await h.core.listNamespacedPod({ namespace: NS, labelSelector: BUILDER_SELECTOR })).items;

  async function upload(files: Record<string, string>): Promise<ArchiveRef> {
    const src = await mkdtemp(path.join(dir, "src-"));
    for (const [name, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(src, name)), { recursive: true });
      await writeFile(path.join(src, name), content);
    }
    const out = `${src}.tar.gz`;
    const packed = await packDirectory(src, out);
    return { ...(await h.store.putFile(out)), files: packed.files };
  }

  async function requestBuild(pkg: string, source: ArchiveRef, buildCommand?: string) {
    revision++;
    await jetstream(h.nc).publish(
      h.s.buildRequested,
      Codecs.buildRequested.encode(
        {
          package: { namespace: "default", name: pkg, revision },
          environment: { namespace: "default", name: "nodejs" },
          source,
          ...(buildCommand !== undefined ? { buildCommand } : {}),
        },
        "registry-test",
      ),
      { msgID: `default/${pkg}/${source.digest}/${revision}` },
    );
  }

  async function finalReport(pkg: string): Promise<BuildReport> {
    let found: BuildReport | undefined;
    await waitFor(
      () =>
        (found = reports.find((r) => r.package.name === pkg && r.state !== "running")) !==
        undefined,
      { timeoutMs: 240_000, what: `the final build report of ${pkg}` },
    );
    return found!;
  }

  before(async () => {
    await h.setUpAll();
    dir = await mkdtemp(path.join(h.workDir, "build-pod-"));
    h.environments.set("nodejs", environment("nodejs", "fizz/env-node", 0));
    h.answerRegistry();
    serve(
      h.nc,
      h.s.registryBuildReport,
      Codecs.registryBuildReport,
      (r) => {
        reports.push(r);
        return Promise.resolve({ applied: true });
      },
      { sender: "registry-test", logger: silentLogger() },
    );
    await ensureBuildQueue(h.nc, h.s);
    node = await startProcnode({
      kubeconfig: h.k.nodeKubeconfig("procnode-1"),
      lookupKubeconfig: h.k.kubeconfig,
      nodeName: "procnode-1",
      heartbeatMs: 2_000,
    });
    void (async () => {
      while (watching) {
        for (const p of await builderPods().catch(() => [])) seen.set(p.metadata!.name!, p);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
  });
  after(async () => {
    watching = false;
    await h.pk?.stop();
    await node?.stop();
    await h.tearDownAll();
  });

  it("deletes a builder pod another poolkeeper left past its deadline, and the pool never sees it", async () => {
    await h.core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: {
          name: "fizz-build-left-over",
          labels: {
            "app.kubernetes.io/component": "fizz-builder",
            "app.kubernetes.io/part-of": "fizz",
          },
          annotations: { "fizz.dev/build-deadline": String(Date.now() - 1000) },
        },
        // Never scheduled anywhere: a pod that stays Pending until the sweep deletes it.
        spec: {
          nodeName: "no-such-node",
          containers: [{ name: "builder", image: "fizz/builder-node" }],
        },
      },
    });
    await h.startKube();
    await h.pk.synced;
    // The first build sweeps; a build of a package with nothing to install is enough.
    await requestBuild("plain", await upload({ "index.js": "module.exports = () => 1;\n" }));
    expect((await finalReport("plain")).state).to.equal("succeeded");
    await waitFor(
      async () =>
        !(await builderPods()).some(
          (p) => p.metadata?.name === "fizz-build-left-over" && !p.metadata.deletionTimestamp,
        ),
      { timeoutMs: 30_000, what: "the leftover deleted" },
    );
    expect(await h.pods(), "the pool adopts no builder pod").to.deep.equal([]);
  });

  it("builds a Node package with an npm dependency in a builder pod and stores the deployment", async () => {
    const source = await upload({
      "package.json": JSON.stringify({
        name: "uses-ms",
        version: "1.0.0",
        main: "index.js",
        dependencies: { ms: "2.1.3" },
      }),
      "package-lock.json": JSON.stringify(MS_LOCK),
      "index.js": "const ms = require('ms');\nmodule.exports = async () => ms(60000);\n",
    });
    await requestBuild("uses-ms", source);
    const r = await finalReport("uses-ms");
    expect(r.state, r.message ?? r.log).to.equal("succeeded");
    expect(r.log).to.include("$ npm ci --omit=dev").and.to.include("builder pod fizz-build-");
    const deployment = r.deployment!;
    const file = path.join(dir, "deployment.tar.gz");
    const stream = await h.store.get(deployment.digest);
    expect(stream, "the deployment is in the store").to.not.equal(null);
    await pipeline(stream!, createWriteStream(file));
    const out = path.join(dir, "deployment");
    await extractArchive({ path: file }, out);
    expect(existsSync(path.join(out, "node_modules/ms/package.json"))).to.equal(true);
    expect(
      JSON.parse(await readFile(path.join(out, "node_modules/ms/package.json"), "utf8")),
    ).to.have.property("version", "2.1.3");
    expect(existsSync(path.join(out, "index.js"))).to.equal(true);
  });

  it("runs builder pods hardened like instance pods, with a random token and only the program's variables", () => {
    const pods = [...seen.values()].filter((p) => p.metadata?.name !== "fizz-build-left-over");
    expect(pods.length).to.be.greaterThan(0);
    const tokens = new Set<string>();
    for (const pod of pods) {
      expect(pod.metadata?.labels).to.deep.include({
        "app.kubernetes.io/component": "fizz-builder",
        "app.kubernetes.io/part-of": "fizz",
      });
      expect(pod.metadata?.labels).to.not.have.property("fizz.dev/managed-by");
      expect(pod.metadata?.labels).to.not.have.property("fizz.dev/environment");
      expect(pod.spec).to.include({
        restartPolicy: "Never",
        automountServiceAccountToken: false,
        enableServiceLinks: false,
      });
      expect(pod.spec!.activeDeadlineSeconds).to.be.a("number");
      expect(pod.spec!.securityContext).to.deep.include({ runAsNonRoot: true, runAsUser: 65532 });
      const c = pod.spec!.containers[0]!;
      expect(c.image).to.equal("fizz/builder-node");
      expect(c.securityContext).to.deep.equal({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ["ALL"] },
      });
      expect(c.env!.map((e) => e.name).sort()).to.deep.equal(
        ["FIZZ_BUILDER_TOKEN", "FIZZ_WORKDIR", "HOME", "PORT"].sort(),
      );
      const token = c.env!.find((e) => e.name === "FIZZ_BUILDER_TOKEN")!.value!;
      expect(token).to.have.length.greaterThan(30);
      tokens.add(token);
    }
    expect(tokens.size, "a fresh token per pod").to.equal(pods.length);
  });

  it("reports a failing build as failed with its log, and keeps the token from the build", async () => {
    await requestBuild(
      "broken",
      await upload({ "a.txt": "a\n" }),
      'env; echo "this build is broken" >&2; exit 3',
    );
    const r = await finalReport("broken");
    expect(r.state).to.equal("failed");
    expect(r.message).to.match(/exited with code 3/);
    expect(r.log).to.include("this build is broken");
    expect(r.log).to.not.include("FIZZ_BUILDER_TOKEN");
    expect(r.deployment).to.equal(undefined);
  });

  it("re-checks the pod's deployment: a link out of it fails the build, nothing is stored", async () => {
    await requestBuild(
      "escapes",
      await upload({ "index.js": "module.exports = () => 1;\n" }),
      'cp index.js "$DEPLOY_PKG/" && ln -s /etc/passwd "$DEPLOY_PKG/passwd"',
    );
    const r = await finalReport("escapes");
    expect(r.state).to.equal("failed");
    expect(r.message).to.match(/deployment refused: .*symlink target escapes/);
    expect(r.deployment).to.equal(undefined);
  });

  it("leaves no builder pod behind", async () => {
    await waitFor(
      async () => (await builderPods()).filter((p) => !p.metadata?.deletionTimestamp).length === 0,
      { timeoutMs: 30_000, what: "no builder pods" },
    );
    expect(seen.size).to.be.greaterThanOrEqual(3);
  });
});
