import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { AppsV1Api, CoreV1Api, KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { startProcnode, type Procnode } from "@fizz/procnode";
import { startK8sLite, waitFor, type K8sLite } from "@fizz/testkit";
import { expect } from "chai";

const ROOT = path.resolve(import.meta.dirname, "../..");
const K8S_DIR = path.join(ROOT, "k8s");
const FIZZ = path.join(ROOT, "node_modules", ".bin", "fizz");
const NS = "fizz";
const NODE = "procnode-1";

/** The workloads `kubectl apply -k k8s/` creates, and the ports their processes must listen on. */
const WORKLOADS = [
  { kind: "StatefulSet", name: "nats", ports: [4222, 8222] },
  { kind: "StatefulSet", name: "redis", ports: [6379] },
  { kind: "Deployment", name: "registry", ports: [8081] },
  { kind: "Deployment", name: "scheduler", ports: [8082] },
  { kind: "Deployment", name: "poolkeeper", ports: [8083] },
  { kind: "Deployment", name: "gateway", ports: [8080, 8090] },
  { kind: "Deployment", name: "kubewatcher", ports: [8084] },
] as const;

const PY_HELLO = 'def main(context):\n    print("Hello, world!")\n';
const NODE_HELLO =
  'module.exports = async (context) => ({ status: 200, body: "Hello, world!\\n" })\n';

/**
 * Issue 4's acceptance: the whole platform deployed into a real control plane (k8s-lite: the real
 * kube-apiserver, controller-manager, scheduler and etcd) from k8s/ with the real kubectl, its pods
 * run as local processes by tools/procnode (acting as the node, with node credentials), then the
 * walking skeleton's user flow with the real CLI. The poolkeeper runs in the cluster on the
 * kubernetes backend as the fizz-poolkeeper service account of k8s/rbac.yaml, so every warm and
 * specialized instance here is a bare Pod it created. Figures are printed, not asserted.
 */
describe("the platform deployed from k8s/ into k8s-lite, run by procnode", function () {
  this.timeout(300_000);
  let k: K8sLite;
  let node: Procnode;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let workDir: string;
  let gatewayUrl = "";
  let registryUrl = "";
  let adminToken = "";
  const figures: string[] = [];
  const figure = (line: string) => {
    figures.push(line);
    console.log(`      ${line}`);
  };

  before(async function () {
    const t0 = performance.now();
    k = await startK8sLite();
    const t1 = performance.now();
    const kc = new KubeConfig();
    kc.loadFromFile(k.kubeconfig);
    core = kc.makeApiClient(CoreV1Api);
    apps = kc.makeApiClient(AppsV1Api);
    node = await startProcnode({
      // The node's own identity (Node authorizer + NodeRestriction), as a kubelet runs.
      kubeconfig: k.nodeKubeconfig(NODE),
      lookupKubeconfig: k.kubeconfig,
      nodeName: NODE,
    });
    figure(
      `k8s-lite up ${ms(t1 - t0)}; procnode registered and schedulable ${ms(performance.now() - t1)}`,
    );
    workDir = await mkdtemp(path.join(tmpdir(), "fizz-k8s-platform-"));
  });

  after(async function () {
    if (figures.length)
      console.log(`\n      figures:\n${figures.map((f) => `        ${f}`).join("\n")}`);
    // FIZZ_K8S_LOGS=1 prints every pod's log tail (there is no `kubectl logs` without a kubelet API).
    if (process.env.FIZZ_K8S_LOGS && node) console.log(podLogs(node, 400));
    await node?.stop();
    await k?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === "failed" && node) console.error(podLogs(node));
  });

  /** `fizz ...` as a user runs it, against the registry and gateway pods. */
  async function fizz(...args: string[]) {
    const r = await run(FIZZ, args, workDir, {
      ...process.env,
      FIZZ_REGISTRY_URL: registryUrl,
      FIZZ_GATEWAY_URL: gatewayUrl,
      FIZZ_TOKEN: adminToken,
    });
    expect(r.code, `fizz ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).to.equal(0);
    return r;
  }

  /** The poolkeeper's pods (not being deleted) matching a label selector. */
  async function runtimePods(selector: string): Promise<V1Pod[]> {
    const list = await core.listNamespacedPod({
      namespace: NS,
      labelSelector: `fizz.dev/managed-by=poolkeeper,${selector}`,
    });
    return list.items.filter((p) => !p.metadata?.deletionTimestamp);
  }

  async function readyWarm(env: string): Promise<V1Pod[]> {
    return (await runtimePods(`fizz.dev/state=warm,fizz.dev/environment=${env}`)).filter(isReady);
  }

  async function poolSize(env: string): Promise<number> {
    const r = await fizz("env", "get", "--name", env, "-o", "json");
    return (JSON.parse(r.stdout) as { spec: { poolSize: number } }).spec.poolSize;
  }

  it("deploys with `kubectl apply -k k8s/`: every Deployment and StatefulSet becomes Ready", async () => {
    const t0 = performance.now();
    // The Secrets first, as docs/operations.md says: k8s/ holds no secret of its own.
    const ns = k.kubectl("apply", "-f", path.join(K8S_DIR, "namespace.yaml"));
    expect(ns.status, ns.stderr).to.equal(0);
    const saved = path.join(workDir, "credentials.json");
    const secretsFile = path.join(workDir, "secrets.yaml");
    const gen = await run(
      process.execPath,
      [path.join(ROOT, "scripts", "k8s-secrets.mjs"), "--save", saved],
      ROOT,
      process.env,
    );
    expect(gen.code, gen.stderr).to.equal(0);
    await writeFile(secretsFile, gen.stdout, { mode: 0o600 });
    const secrets = k.kubectl("apply", "-f", secretsFile);
    expect(secrets.status, secrets.stderr).to.equal(0);
    adminToken = (JSON.parse(readFileSync(saved, "utf8")) as { adminToken: string }).adminToken;
    const applied = k.kubectl("apply", "-k", K8S_DIR);
    expect(applied.status, applied.stderr).to.equal(0);
    const readyAt: Record<string, number> = {};
    let last = "";
    await waitFor(
      async () => {
        const [deps, sets] = await Promise.all([
          apps.listNamespacedDeployment({ namespace: NS }),
          apps.listNamespacedStatefulSet({ namespace: NS }),
        ]);
        const all = [...deps.items, ...sets.items];
        const pending: string[] = [];
        for (const w of WORKLOADS) {
          const o = all.find((x) => x.metadata?.name === w.name);
          const want = o?.spec?.replicas ?? 1;
          if (o && (o.status?.readyReplicas ?? 0) >= want && o.status?.replicas === want) {
            readyAt[w.name] ??= performance.now() - t0;
          } else pending.push(`${w.name} ${o?.status?.readyReplicas ?? 0}/${want}`);
        }
        last = pending.join(", ");
        return pending.length === 0;
      },
      { timeoutMs: 180_000, intervalMs: 250, what: "every workload in namespace fizz Ready" },
    ).catch((err: Error) => Promise.reject(new Error(`${err.message}; not ready: ${last}`)));
    const total = performance.now() - t0;
    figure(
      `time to deploy (kubectl apply -k k8s/ → all Ready): ${ms(total)} (` +
        WORKLOADS.map((w) => `${w.name} ${ms(readyAt[w.name] ?? 0)}`).join(", ") +
        ")",
    );
    // The real controllers did the work: the gateway's two replicas come from its ReplicaSet.
    const gw = (
      await core.listNamespacedPod({
        namespace: NS,
        labelSelector: "app.kubernetes.io/name=gateway",
      })
    ).items;
    expect(gw.filter(isReady)).to.have.length(2);
    expect(new Set(gw.map((p) => p.status?.podIP)).size).to.equal(2);
    for (const p of gw) expect(p.spec?.nodeName).to.equal(NODE);
  });

  it("each pod's probes pass on the ports its manifest names, and it listens on its declared ports", async () => {
    for (const w of WORKLOADS) {
      const pods = (
        await core.listNamespacedPod({
          namespace: NS,
          labelSelector: `app.kubernetes.io/name=${w.name}`,
        })
      ).items;
      expect(pods.length, w.name).to.be.greaterThan(0);
      for (const pod of pods) {
        const ip = pod.status?.podIP;
        expect(ip, `${w.name} pod IP`).to.match(/^127\.0\.0\.\d+$/);
        expect(isReady(pod), `${pod.metadata?.name} Ready`).to.equal(true);
        const c = pod.spec!.containers[0]!;
        for (const [kind, probe] of [
          ["readiness", c.readinessProbe],
          ["liveness", c.livenessProbe],
        ] as const) {
          expect(probe, `${w.name} ${kind} probe`).to.not.equal(undefined);
          if (probe?.httpGet) {
            const res = await fetch(
              `http://${ip}:${String(probe.httpGet.port)}${probe.httpGet.path}`,
              {
                signal: AbortSignal.timeout(3000),
              },
            );
            expect(
              res.status,
              `${w.name} ${kind} ${probe.httpGet.path}:${probe.httpGet.port}`,
            ).to.equal(200);
            await res.body?.cancel();
          } else {
            expect(
              await tcpOpen(ip!, Number(probe?.tcpSocket?.port)),
              `${w.name} ${kind} tcp`,
            ).to.equal(true);
          }
        }
        for (const port of w.ports)
          expect(await tcpOpen(ip!, port), `${w.name} listens on ${ip}:${port}`).to.equal(true);
        expect(c.ports?.map((p) => p.containerPort)).to.include(w.ports[0]);
      }
    }
    // The poolkeeper reports its kubernetes backend (the pod watch) ready, and it acts as the
    // fizz-poolkeeper service account: no FIZZ_KUBECONFIG, only the pod's projected token.
    const pk = await onePod("poolkeeper");
    const readyz = await fetch(`http://${pk.status!.podIP}:8083/readyz`);
    expect(await readyz.json()).to.have.nested.property("checks.kubernetes", true);
    expect(pk.spec?.serviceAccountName).to.equal("fizz-poolkeeper");
    expect(serviceAccountOf(node, pk.metadata!.name!)).to.equal(
      "system:serviceaccount:fizz:fizz-poolkeeper",
    );

    const gw = await onePod("gateway");
    const reg = await onePod("registry");
    gatewayUrl = `http://${gw.status!.podIP}:8080`;
    registryUrl = `http://${reg.status!.podIP}:8081`;
  });

  async function onePod(app: string): Promise<V1Pod> {
    const pods = (
      await core.listNamespacedPod({
        namespace: NS,
        labelSelector: `app.kubernetes.io/name=${app}`,
      })
    ).items
      .filter(isReady)
      .sort((a, b) => (a.metadata!.name! < b.metadata!.name! ? -1 : 1));
    expect(pods.length, `${app} ready pods`).to.be.greaterThan(0);
    return pods[0]!;
  }

  let pySize = 0;
  let warmBefore: V1Pod[] = [];
  it("`fizz env create` fills a warm pool of bare pods before any request", async () => {
    const t0 = performance.now();
    await fizz("env", "create", "--name", "python", "--image", "fizz/env-python");
    pySize = await poolSize("python");
    expect(pySize).to.be.greaterThan(0);
    warmBefore = await waitFor(
      async () => {
        const pods = await readyWarm("python");
        return pods.length === pySize ? pods : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: `${pySize} warm python pods Ready` },
    );
    figure(
      `python pool of ${pySize} warm pods Ready ${ms(performance.now() - t0)} after \`fizz env create\` started`,
    );
    for (const p of warmBefore) {
      expect(p.metadata?.labels).to.include({
        "fizz.dev/state": "warm",
        "fizz.dev/environment": "python",
      });
      expect(p.metadata?.labels).to.not.have.property("fizz.dev/function");
      expect(p.spec?.containers[0]?.image).to.equal("fizz/env-python");
      expect(p.spec?.nodeName).to.equal(NODE);
      expect(p.status?.podIP).to.match(/^127\.0\.0\.\d+$/);
    }
    // Created by the poolkeeper, not by a controller: no owner, restartPolicy Never.
    expect(warmBefore.every((p) => !p.metadata?.ownerReferences?.length)).to.equal(true);
    expect(warmBefore.every((p) => p.spec?.restartPolicy === "Never")).to.equal(true);
  });

  let specializedPy: V1Pod | undefined;
  it("serves the Python hello world at /hello; the first request specializes one warm pod", async () => {
    await writeFile(path.join(workDir, "hello.py"), PY_HELLO);
    await fizz(
      "fn",
      "create",
      "--name",
      "hello",
      "--env",
      "python",
      "--code",
      "hello.py",
      "--route",
      "/hello",
      "--idle-timeout",
      "2",
    );
    // Nothing specialized before the first request.
    expect(await runtimePods("fizz.dev/state=specialized")).to.deep.equal([]);
    const { cold, warm } = await coldAndWarm(`${gatewayUrl}/hello`);
    figure(`python /hello through the gateway: cold ${ms(cold)}, warm ${warmSummary(warm)}`);

    specializedPy = await waitFor(
      async () => {
        const pods = await runtimePods("fizz.dev/state=specialized,fizz.dev/function=hello");
        return pods.length === 1 ? pods[0] : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 100, what: "one pod labelled specialized for hello" },
    );
    // The same pod, relabelled in place: it was one of the warm ones.
    const before = warmBefore.find((p) => p.metadata?.name === specializedPy!.metadata?.name);
    expect(before, "the specialized pod was warm before").to.not.equal(undefined);
    expect(specializedPy.metadata?.uid).to.equal(before!.metadata?.uid);
    expect(specializedPy.metadata?.labels).to.include({
      "fizz.dev/state": "specialized",
      "fizz.dev/environment": "python",
      "fizz.dev/function": "hello",
      "fizz.dev/function-namespace": "default",
    });
    // Exactly one instance for sequential requests.
    expect(await runtimePods("fizz.dev/function=hello")).to.have.length(1);
  });

  it("refills the python pool to poolSize with new pods", async () => {
    const refilled = await waitFor(
      async () => {
        const pods = await readyWarm("python");
        return pods.length === pySize ? pods : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: `python pool back to ${pySize} warm` },
    );
    const names = refilled.map((p) => p.metadata?.name);
    expect(names).to.not.include(specializedPy!.metadata?.name);
    expect(names.filter((n) => !warmBefore.some((p) => p.metadata?.name === n))).to.have.length(1);
  });

  it("deletes the idle specialized pod after idleTimeout (2 s), keeping the warm pool", async () => {
    const name = specializedPy!.metadata!.name!;
    const t0 = lastRequestAt;
    await waitFor(
      async () => {
        try {
          await core.readNamespacedPod({ name, namespace: NS });
          return false;
        } catch (err) {
          return (err as { code?: number }).code === 404;
        }
      },
      { timeoutMs: 60_000, intervalMs: 200, what: `idle pod ${name} deleted` },
    );
    figure(
      `idle specialized pod deleted ${ms(performance.now() - t0)} after the last request (idleTimeout 2 s)`,
    );
    expect(await runtimePods("fizz.dev/function=hello")).to.deep.equal([]);
    expect(await readyWarm("python")).to.have.length(pySize);
    // The next request specializes again from the pool.
    const again = await get(`${gatewayUrl}/hello`);
    expect(again.status, again.text).to.equal(200);
    expect(again.text).to.equal("Hello, world!\n");
    figure(`python /hello after its pod was reaped: cold again ${ms(again.ms)}`);
  });

  it("serves the Node hello world at /hello-node from a warm node pod", async () => {
    await fizz("env", "create", "--name", "nodejs", "--image", "fizz/env-node");
    const size = await poolSize("nodejs");
    const warmNode = await waitFor(
      async () => {
        const pods = await readyWarm("nodejs");
        return pods.length === size ? pods : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: `${size} warm nodejs pods Ready` },
    );
    await writeFile(path.join(workDir, "hello.js"), NODE_HELLO);
    await fizz(
      "fn",
      "create",
      "--name",
      "hello-node",
      "--env",
      "nodejs",
      "--code",
      "hello.js",
      "--route",
      "/hello-node",
    );
    const { cold, warm } = await coldAndWarm(`${gatewayUrl}/hello-node`);
    figure(`node /hello-node through the gateway: cold ${ms(cold)}, warm ${warmSummary(warm)}`);
    const pod = await waitFor(
      async () => {
        const pods = await runtimePods("fizz.dev/state=specialized,fizz.dev/function=hello-node");
        return pods.length === 1 ? pods[0] : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 100, what: "one pod labelled specialized for hello-node" },
    );
    expect(warmNode.map((p) => p.metadata?.name)).to.include(pod.metadata?.name);
    expect(pod.metadata?.labels).to.include({ "fizz.dev/environment": "nodejs" });
    // `fizz fn test` goes through the gateway too.
    const t = await fizz("fn", "test", "--name", "hello-node");
    expect(t.stdout).to.equal("Hello, world!\n");
  });

  it("with an empty pool (poolsize 0) creates the pod on the first request's path", async () => {
    await fizz(
      "env",
      "create",
      "--name",
      "nodecold",
      "--image",
      "fizz/env-node",
      "--poolsize",
      "0",
    );
    await fizz(
      "fn",
      "create",
      "--name",
      "hello-cold",
      "--env",
      "nodecold",
      "--code",
      "hello.js",
      "--route",
      "/hello-cold",
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(await runtimePods("fizz.dev/environment=nodecold")).to.deep.equal([]);
    const { cold, warm } = await coldAndWarm(`${gatewayUrl}/hello-cold`);
    figure(
      `node /hello-cold from an empty pool (pod created, scheduled, started, Ready, specialized on the request path): cold ${ms(cold)}, warm ${warmSummary(warm)}`,
    );
    const pods = await runtimePods("fizz.dev/environment=nodecold");
    expect(pods).to.have.length(1);
    expect(pods[0]!.metadata?.labels).to.include({ "fizz.dev/function": "hello-cold" });
  });

  it("every pod the platform runs is still healthy: no restarts, no failed pods", async () => {
    const pods = (await core.listNamespacedPod({ namespace: NS })).items;
    for (const p of pods) {
      expect(p.status?.phase, p.metadata?.name).to.not.equal("Failed");
      const restarts = p.status?.containerStatuses?.reduce((n, c) => n + c.restartCount, 0) ?? 0;
      expect(restarts, `${p.metadata?.name} restarts`).to.equal(0);
    }
  });
});

/** When the last request of coldAndWarm() was answered: the idle clock starts there. */
let lastRequestAt = 0;

async function coldAndWarm(url: string): Promise<{ cold: number; warm: number[] }> {
  const first = await get(url);
  expect(first.status, first.text).to.equal(200);
  expect(first.text).to.equal("Hello, world!\n");
  const warm: number[] = [];
  for (let i = 0; i < 30; i++) {
    const r = await get(url);
    expect(r.status, r.text).to.equal(200);
    expect(r.text).to.equal("Hello, world!\n");
    warm.push(r.ms);
  }
  lastRequestAt = performance.now();
  return { cold: first.ms, warm };
}

async function get(url: string) {
  const t0 = performance.now();
  const res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  return { status: res.status, text, ms: performance.now() - t0 };
}

function isReady(p: V1Pod): boolean {
  return !!p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
}

function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.setTimeout(2000, () => {
      s.destroy();
      resolve(false);
    });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/**
 * The identity a pod's process talks to the API server as: the `sub` of the token in the
 * kubeconfig procnode gave it (its KUBECONFIG, read from /proc/<pid>/environ).
 */
function serviceAccountOf(node: Procnode, pod: string): string {
  const pid = node.pods().find((p) => p.name === pod)?.containers[0]?.pid;
  expect(pid, `${pod} pid`).to.be.a("number");
  const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
  expect(environ.some((e) => e.startsWith("FIZZ_KUBECONFIG="))).to.equal(false);
  const file = environ.find((e) => e.startsWith("KUBECONFIG="))?.slice("KUBECONFIG=".length);
  expect(file, `${pod} KUBECONFIG`).to.be.a("string");
  const kc = JSON.parse(readFileSync(file!, "utf8")) as {
    users: { user: { "token-file": string } }[];
  };
  const token = readFileSync(kc.users[0]!.user["token-file"], "utf8").trim();
  const payload = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as {
    sub: string;
  };
  return payload.sub;
}

/** The tail of every container log procnode holds (there is no `kubectl logs` without a kubelet API). */
function podLogs(node: Procnode, lines = 40): string {
  const out: string[] = [];
  for (const p of node.pods()) {
    for (const c of p.containers) {
      const head = `--- ${p.namespace}/${p.name} [${c.name}] ${c.state}${c.reason ? ` (${c.reason})` : ""} restarts=${c.restartCount}`;
      const log =
        c.logFile && existsSync(c.logFile)
          ? readFileSync(c.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n")
          : "(no log)";
      out.push(`${head}\n${log}`);
    }
  }
  return out.join("\n");
}

function ms(x: number): string {
  return x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`;
}

function warmSummary(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const q = (f: number) => s[Math.min(s.length - 1, Math.floor(f * s.length))]!;
  return `median ${ms(q(0.5))}, p90 ${ms(q(0.9))}, min ${ms(s[0]!)} (n=${s.length})`;
}
