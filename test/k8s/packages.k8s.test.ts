import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { CoreV1Api, KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { packDirectory } from "@fizz/kit/archive";
import { startProcnode, type Procnode } from "@fizz/procnode";
import { startK8sLite, waitFor, type K8sLite } from "@fizz/testkit";
import { expect } from "chai";
import { startPlatform, type Platform } from "../e2e/helpers";
import { isReady, podLogs, serviceAccountKubeconfig } from "./kube-platform";

const ROOT = path.resolve(import.meta.dirname, "../..");
const K8S_DIR = path.join(ROOT, "k8s");
const NS = "fizz";
const NODE = "procnode-1";
/** The label that gives a Secret or ConfigMap of the pods' namespace to one Fizz namespace. */
const OWNER_LABEL = "fizz.dev/namespace";

/**
 * Packages, secrets and configmaps on the kubernetes backend: the platform's services as local
 * processes (the launcher of `npm start`), the poolkeeper on the kubernetes backend as the
 * fizz-poolkeeper service account of k8s/rbac.yaml against a real kube-apiserver (k8s-lite), its
 * pods run by tools/procnode (mount paths such as /secrets become per-pod directories). Archives
 * go through the registry's REST API; Secrets and ConfigMaps are Kubernetes objects created
 * through the API server, in the pods' namespace, labelled for the function's Fizz namespace.
 */
describe("packages, secrets and configmaps on the kubernetes backend (k8s-lite + procnode)", function () {
  this.timeout(300_000);
  let k: K8sLite;
  let node: Procnode | undefined;
  let p: Platform | undefined;
  let core: CoreV1Api;
  let work: string;

  before(async function () {
    work = await mkdtemp(path.join(tmpdir(), "fizz-k8s-pkg-"));
    k = await startK8sLite();
    for (const f of ["namespace.yaml", "rbac.yaml"]) {
      const r = k.kubectl("apply", "-f", path.join(K8S_DIR, f));
      expect(r.status, `kubectl apply ${f}: ${r.stderr}`).to.equal(0);
    }
    const kc = new KubeConfig();
    kc.loadFromFile(k.kubeconfig);
    core = kc.makeApiClient(CoreV1Api);
    node = await startProcnode({
      kubeconfig: k.nodeKubeconfig(NODE),
      lookupKubeconfig: k.kubeconfig,
      nodeName: NODE,
    });
    p = await startPlatform({
      FIZZ_POOLKEEPER_BACKEND: "kubernetes",
      FIZZ_KUBECONFIG: await serviceAccountKubeconfig(k, work),
      FIZZ_POOLKEEPER_NAMESPACE: NS,
    });
    await api("POST", "/v1/namespaces/default/environments", {
      name: "python",
      spec: { image: "fizz/env-python", poolSize: 2 },
    });
    await waitFor(async () => (await warmReady("python")).length === 2, {
      timeoutMs: 90_000,
      intervalMs: 200,
      what: "2 warm python pods Ready",
    });
  });

  after(async () => {
    await p?.stop();
    await node?.stop();
    await k?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state !== "failed") return;
    if (p) console.error(p.logs.slice(-80).join("\n"));
    if (node) console.error(podLogs(node));
  });

  async function api(method: string, route: string, body?: unknown): Promise<unknown> {
    const res = await fetch(`${p!.registryUrl}${route}`, {
      method,
      headers: { "content-type": "application/json", authorization: `Bearer ${p!.adminToken}` },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
    return JSON.parse(text) as unknown;
  }

  async function upload(
    file: string,
    use: "deployment" | "source" = "deployment",
  ): Promise<{ digest: string; size: number }> {
    const res = await fetch(`${p!.registryUrl}/v1/namespaces/default/archives?use=${use}`, {
      method: "POST",
      headers: { "content-type": "application/gzip", authorization: `Bearer ${p!.adminToken}` },
      body: readFileSync(file),
    });
    const text = await res.text();
    expect(res.status, text).to.equal(201);
    return (JSON.parse(text) as { archive: { digest: string; size: number } }).archive;
  }

  /** A package of `files` (canonical tar.gz made here), uploaded and created as a deployment. */
  async function deploymentPackage(name: string, files: Record<string, string>) {
    const dir = path.join(work, name);
    for (const [rel, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
      await writeFile(path.join(dir, rel), content);
    }
    const packed = await packDirectory(dir, `${dir}.tar.gz`);
    const archive = await upload(`${dir}.tar.gz`);
    await api("POST", "/v1/namespaces/default/packages", {
      name,
      spec: { environment: "python", deployment: archive },
    });
    return { packed, archive };
  }

  async function pods(selector: string): Promise<V1Pod[]> {
    const list = await core.listNamespacedPod({
      namespace: NS,
      labelSelector: `fizz.dev/managed-by=poolkeeper,${selector}`,
    });
    return list.items.filter((x) => !x.metadata?.deletionTimestamp);
  }

  async function warmReady(env: string): Promise<V1Pod[]> {
    return (await pods(`fizz.dev/state=warm,fizz.dev/environment=${env}`)).filter(isReady);
  }

  /** The pod serving `fn` (relabelled in place just after its first answer). */
  function specializedPod(fn: string): Promise<V1Pod> {
    return waitFor(
      async () => {
        const found = await pods(`fizz.dev/state=specialized,fizz.dev/function=${fn}`);
        return found.length === 1 ? found[0] : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 100, what: `one pod labelled specialized for ${fn}` },
    );
  }

  async function call(fn: string) {
    const res = await fetch(`${p!.gatewayUrl}/function/${fn}`, {
      signal: AbortSignal.timeout(60_000),
    });
    return { status: res.status, text: await res.text() };
  }

  it("serves a function whose code is an uploaded package deployment, from a specialized pod", async () => {
    const { packed, archive } = await deploymentPackage("greeter", {
      "main.py": "from lib.words import greeting\n\ndef main():\n    return greeting()\n",
      "lib/__init__.py": "",
      "lib/words.py": 'def greeting():\n    return "Hello from a package\\n"\n',
    });
    // Already canonical: the registry stores exactly these bytes.
    expect(archive.digest).to.equal(packed.digest);
    expect(archive.size).to.equal((await stat(path.join(work, "greeter.tar.gz"))).size);
    await api("POST", "/v1/namespaces/default/functions", {
      name: "greeter",
      spec: { environment: "python", package: { name: "greeter" } },
    });
    const r = await call("greeter");
    expect(r.status, r.text).to.equal(200);
    expect(r.text).to.equal("Hello from a package\n");
    const pod = await specializedPod("greeter");
    expect(pod.metadata?.labels).to.include({ "fizz.dev/environment": "python" });
  });

  it("gives the function its Secret and ConfigMap as files under FIZZ_SECRETS_DIR and FIZZ_CONFIGS_DIR, and its env vars", async () => {
    await core.createNamespacedSecret({
      namespace: NS,
      body: {
        metadata: { name: "db", labels: { [OWNER_LABEL]: "default" } },
        data: {
          password: Buffer.from("s3cr3t-value").toString("base64"),
          "tls.key": Buffer.from([0, 1, 2, 255]).toString("base64"),
        },
      },
    });
    await core.createNamespacedConfigMap({
      namespace: NS,
      body: {
        metadata: { name: "settings", labels: { [OWNER_LABEL]: "default" } },
        data: { mode: "fast", "app.json": '{"a":1}' },
      },
    });
    await deploymentPackage("reader", { "main.py": READER_PY });
    await api("POST", "/v1/namespaces/default/functions", {
      name: "reader",
      spec: {
        environment: "python",
        package: { name: "reader" },
        secrets: ["db"],
        configmaps: ["settings"],
        env: { GREETING: "hi there", EMPTY: "" },
      },
    });
    const r = await call("reader");
    expect(r.status, r.text).to.equal(200);
    const got = JSON.parse(r.text) as Record<string, string>;
    expect(got).to.include({
      password: "s3cr3t-value",
      tlsKey: "000102ff",
      mode: "fast",
      appJson: '{"a":1}',
      greeting: "hi there",
      empty: "",
    });
    // The pod declares /secrets and /configs (emptyDirs, as Fission mounts them); procnode maps
    // each mount path to the pod's own volume directory, and that is what the function sees.
    const pod = await specializedPod("reader");
    const env = pod.spec!.containers[0]!.env ?? [];
    expect(env).to.deep.include({ name: "FIZZ_SECRETS_DIR", value: "/secrets" });
    expect(env).to.deep.include({ name: "FIZZ_CONFIGS_DIR", value: "/configs" });
    expect(got.secretsDir).to.match(/\/volumes\/secrets$/);
    expect(got.configsDir).to.match(/\/volumes\/configs$/);
    const secretsVolume = pod.spec!.volumes!.find((v) => v.name === "secrets");
    expect(secretsVolume?.emptyDir?.medium).to.equal("Memory");
    // Nothing of the platform's environment reaches the function.
    expect(got.platformVars).to.equal("");
  });

  it("fails the call with an error naming a Secret that does not exist, or is not labelled for the function's namespace", async () => {
    // Exists, but given to another Fizz namespace: the same answer as a missing one.
    await core.createNamespacedSecret({
      namespace: NS,
      body: {
        metadata: { name: "team-b-db", labels: { [OWNER_LABEL]: "team-b" } },
        data: { password: Buffer.from("not yours").toString("base64") },
      },
    });
    await core.createNamespacedSecret({
      namespace: NS,
      body: {
        metadata: { name: "unlabelled" },
        data: { password: Buffer.from("not yours either").toString("base64") },
      },
    });
    for (const secret of ["absent", "team-b-db", "unlabelled"]) {
      const name = `needs-${secret}`;
      await api("POST", "/v1/namespaces/default/functions", {
        name,
        spec: { environment: "python", package: { name: "reader" }, secrets: [secret] },
      });
      const r = await call(name);
      expect(r.status, r.text).to.equal(500);
      expect(r.text).to.include(secret);
      expect(r.text).to.not.include("not yours");
      expect(await pods(`fizz.dev/function=${name}`)).to.deep.equal([]);
    }
    // No warm pod was spent on them.
    await waitFor(async () => (await warmReady("python")).length === 2, {
      timeoutMs: 30_000,
      intervalMs: 200,
      what: "the warm pool intact",
    });
  });

  it("builds a Node package with an npm dependency in a builder pod, deletes the pod, and serves the result", async () => {
    await api("POST", "/v1/namespaces/default/environments", {
      name: "nodejs",
      spec: { image: "fizz/env-node", poolSize: 1 },
    });
    const src = path.join(work, "ms-src");
    await mkdir(src, { recursive: true });
    await writeFile(
      path.join(src, "package.json"),
      JSON.stringify({ name: "ms-src", version: "1.0.0", dependencies: { ms: "2.1.3" } }),
    );
    await writeFile(
      path.join(src, "index.js"),
      'const ms = require("ms");\nmodule.exports = async () => ms(60000) + "\\n";\n',
    );
    await packDirectory(src, `${src}.tar.gz`);
    const source = await upload(`${src}.tar.gz`, "source");
    const t0 = performance.now();
    await api("POST", "/v1/namespaces/default/packages", {
      name: "ms-app",
      spec: { environment: "nodejs", source },
    });
    const builders = new Set<string>();
    const status = await waitFor(
      async () => {
        const list = await core.listNamespacedPod({
          namespace: NS,
          labelSelector: BUILDER_SELECTOR,
        });
        for (const b of list.items) builders.add(b.metadata!.name!);
        const pkg = (await api("GET", "/v1/namespaces/default/packages/ms-app")) as {
          status: { buildState: string; message?: string; buildLog?: string };
        };
        if (pkg.status.buildState === "failed")
          throw new Error(`build failed: ${pkg.status.message}\n${pkg.status.buildLog}`);
        return pkg.status.buildState === "succeeded" ? pkg.status : undefined;
      },
      { timeoutMs: 240_000, intervalMs: 100, what: "ms-app built" },
    );
    console.log(`      build on Kubernetes: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    expect(status.buildState).to.equal("succeeded");
    expect(builders.size, "a builder pod was seen").to.be.greaterThan(0);
    // The builder pod is gone once the build is over, and never joined the pool.
    await waitFor(
      async () =>
        (await core.listNamespacedPod({ namespace: NS, labelSelector: BUILDER_SELECTOR })).items
          .length === 0,
      { timeoutMs: 30_000, intervalMs: 200, what: "builder pods deleted" },
    );
    const pooled = (await pods("fizz.dev/environment=nodejs")).map((x) => x.metadata?.name);
    for (const name of builders) expect(pooled).to.not.include(name);
    await api("POST", "/v1/namespaces/default/functions", {
      name: "ms-app",
      spec: { environment: "nodejs", package: { name: "ms-app" } },
    });
    const r = await call("ms-app");
    expect(r.status, r.text).to.equal(200);
    expect(r.text).to.equal("1m\n");
  });
});

/** The builder pods' labels (services/poolkeeper/src/build/pod-runner-pod.ts). */
const BUILDER_SELECTOR = "app.kubernetes.io/component=fizz-builder,app.kubernetes.io/part-of=fizz";

/** Reads what a function is given; hex for the binary key; lists any FIZZ_ variable it should not see. */
const READER_PY = `import json, os

ALLOWED = {"FIZZ_SECRETS_DIR", "FIZZ_CONFIGS_DIR"}


def main():
    s = os.environ["FIZZ_SECRETS_DIR"]
    c = os.environ["FIZZ_CONFIGS_DIR"]

    def read(*p):
        with open(os.path.join(*p), "rb") as f:
            return f.read()

    return json.dumps({
        "password": read(s, "default", "db", "password").decode(),
        "tlsKey": read(s, "default", "db", "tls.key").hex(),
        "mode": read(c, "default", "settings", "mode").decode(),
        "appJson": read(c, "default", "settings", "app.json").decode(),
        "greeting": os.environ.get("GREETING"),
        "empty": os.environ.get("EMPTY"),
        "secretsDir": s,
        "configsDir": c,
        "platformVars": ",".join(sorted(
            k for k in os.environ
            if k.startswith(("FIZZ_NATS", "FIZZ_REDIS", "FIZZ_ADMIN", "FIZZ_KUBE", "KUBECONFIG"))
        )),
    })
`;
