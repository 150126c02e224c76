import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { AppsV1Api, CoordinationV1Api, KubeConfig } from "@kubernetes/client-node";
import { createLogger } from "@fizz/kit";
import { startK8sLite, waitFor, type K8sLite } from "@fizz/testkit";
import { defaultImageMap, startProcnode, type Procnode } from "../src/index";
import {
  adminCore,
  httpGet,
  isReady,
  podSpec,
  processAlive,
  readPod,
  tcpExchange,
  waitPod,
  WHOAMI,
} from "./helpers";

const K8S_DIR = path.resolve(import.meta.dirname, "../../../k8s");

const NODE = "procnode-a";
const envNode = {
  image: "fizz/env-node:dev",
  ports: [{ containerPort: 8888 }],
  readinessProbe: { httpGet: { path: "/healthz", port: 8888 }, periodSeconds: 1 },
};

/** procnode against a real control plane: the real scheduler binds, procnode runs processes. */
describe("procnode on k8s-lite", function () {
  let k: K8sLite;
  let node: Procnode;
  let core: ReturnType<typeof adminCore>;
  let kc: KubeConfig;

  before(async function () {
    k = await startK8sLite();
    core = adminCore(k.kubeconfig);
    kc = new KubeConfig();
    kc.loadFromFile(k.kubeconfig);
    node = await startProcnode({
      // The node's own identity (Node authorizer + NodeRestriction), as a kubelet runs.
      kubeconfig: k.nodeKubeconfig(NODE),
      lookupKubeconfig: k.kubeconfig,
      nodeName: NODE,
      images: defaultImageMap,
      heartbeatMs: 1000,
      backoffMs: { initial: 200, max: 1000 },
      // PROCNODE_LOG=debug shows what the agent does.
      ...(process.env.PROCNODE_LOG
        ? { logger: createLogger("procnode", process.env.PROCNODE_LOG) }
        : {}),
    });
  });
  after(async function () {
    await node?.stop();
    await k?.stop();
  });

  it("registers a Ready, schedulable node with capacity and a loopback InternalIP", async () => {
    const n = await core.readNode({ name: NODE });
    const ready = n.status?.conditions?.find((c) => c.type === "Ready");
    expect(ready?.status).to.equal("True");
    expect(n.status?.allocatable?.pods).to.equal("110");
    expect(n.status?.addresses).to.deep.include({ type: "InternalIP", address: "127.0.0.1" });
    expect(n.spec?.taints ?? []).to.deep.equal([]);
  });

  it("renews its Lease in kube-node-lease", async () => {
    const leases = kc.makeApiClient(CoordinationV1Api);
    const first = await leases.readNamespacedLease({ name: NODE, namespace: "kube-node-lease" });
    expect(first.spec?.holderIdentity).to.equal(NODE);
    const t0 = new Date(first.spec?.renewTime ?? 0).getTime();
    await waitFor(
      async () => {
        const l = await leases.readNamespacedLease({ name: NODE, namespace: "kube-node-lease" });
        return new Date(l.spec?.renewTime ?? 0).getTime() > t0;
      },
      { timeoutMs: 5000, intervalMs: 250, what: "lease renewal" },
    );
  });

  it("runs a fizz/env-node pod bound by the real scheduler: Running, Ready, podIP 127.0.0.N serving /healthz", async () => {
    await core.createNamespacedPod({ namespace: "default", body: podSpec("web-1", envNode) });
    const pod = await waitPod(core, "web-1", isReady, "Ready");
    expect(pod.spec?.nodeName).to.equal(NODE);
    expect(pod.status?.phase).to.equal("Running");
    expect(pod.status?.podIP).to.match(/^127\.0\.0\.([2-9]|[1-9]\d+)$/);
    expect(pod.status?.hostIP).to.equal("127.0.0.1");
    const cs = pod.status?.containerStatuses?.[0];
    expect(cs?.ready).to.equal(true);
    expect(cs?.state?.running).to.not.equal(undefined);
    const res = await httpGet(`http://${pod.status?.podIP}:8888/healthz`);
    expect(res.status).to.equal(200);
    expect(res.body).to.include('"status":"ok"');
  });

  it("gives two pods different IPs, each serving on the same port", async () => {
    await core.createNamespacedPod({ namespace: "default", body: podSpec("web-2", envNode) });
    const a = await waitPod(core, "web-1", isReady, "Ready");
    const b = await waitPod(core, "web-2", isReady, "Ready");
    expect(a.status?.podIP).to.not.equal(b.status?.podIP);
    expect((await httpGet(`http://${b.status?.podIP}:8888/healthz`)).status).to.equal(200);
  });

  it("on deletion kills the process and removes the pod object", async () => {
    const pid = node.pods().find((p) => p.name === "web-2")?.containers[0]?.pid;
    expect(pid).to.be.a("number");
    await core.deleteNamespacedPod({ name: "web-2", namespace: "default" });
    await waitFor(async () => (await readPod(core, "web-2")) === undefined, {
      timeoutMs: 15_000,
      intervalMs: 200,
      what: "pod object gone",
    });
    expect(processAlive(pid!)).to.equal(false);
    expect(node.pods().some((p) => p.name === "web-2")).to.equal(false);
  });

  it("restarts a container that exits 1 under restartPolicy Always", async () => {
    await core.createNamespacedPod({
      namespace: "default",
      body: podSpec("crasher", { image: "busybox", command: ["sh", "-c", "echo dying; exit 1"] }),
    });
    const pod = await waitPod(
      core,
      "crasher",
      (p) => (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 2,
      "restartCount >= 2",
    );
    const cs = pod.status?.containerStatuses?.[0];
    expect(cs?.lastState?.terminated?.exitCode).to.equal(1);
    expect(cs?.lastState?.terminated?.reason).to.equal("Error");
    expect(pod.status?.phase).to.equal("Running");
    expect(isReady(pod)).to.equal(false);
  });

  it("reports an image with no mapping as Waiting ImageNotMapped and starts nothing", async () => {
    await core.createNamespacedPod({
      namespace: "default",
      body: podSpec("unmapped", { image: "example.com/acme/unknown:1.0" }),
    });
    const pod = await waitPod(
      core,
      "unmapped",
      (p) => !!p.status?.containerStatuses?.[0]?.state?.waiting?.reason?.includes("ImageNotMapped"),
      "ImageNotMapped",
    );
    expect(pod.status?.phase).to.equal("Pending");
    expect(pod.status?.containerStatuses?.[0]?.state?.waiting?.message).to.include(
      "example.com/acme/unknown:1.0",
    );
    expect(node.pods().find((p) => p.name === "unmapped")?.containers[0]?.pid).to.equal(undefined);
  });

  it("runs a restartPolicy Never pod to Succeeded", async () => {
    await core.createNamespacedPod({
      namespace: "default",
      body: podSpec(
        "job-ok",
        { image: "busybox", command: ["sh", "-c", "exit 0"] },
        { restartPolicy: "Never" },
      ),
    });
    const pod = await waitPod(core, "job-ok", (p) => p.status?.phase === "Succeeded", "Succeeded");
    expect(pod.status?.containerStatuses?.[0]?.state?.terminated?.reason).to.equal("Completed");
  });

  it("runs a Deployment's pods created by the real ReplicaSet controller", async () => {
    const apps = kc.makeApiClient(AppsV1Api);
    await apps.createNamespacedDeployment({
      namespace: "default",
      body: {
        metadata: { name: "hello" },
        spec: {
          replicas: 2,
          selector: { matchLabels: { app: "hello" } },
          template: {
            metadata: { labels: { app: "hello" } },
            spec: { containers: [{ name: "env", ...envNode }] },
          },
        },
      },
    });
    await waitFor(
      async () =>
        (await apps.readNamespacedDeployment({ name: "hello", namespace: "default" })).status
          ?.readyReplicas === 2,
      {
        timeoutMs: 30_000,
        intervalMs: 250,
        what: "deployment hello with 2 ready replicas",
      },
    );
    const pods = (
      await core.listNamespacedPod({ namespace: "default", labelSelector: "app=hello" })
    ).items;
    expect(new Set(pods.map((p) => p.status?.podIP)).size).to.equal(2);
  });

  it("restarts a container whose liveness probe fails", async () => {
    await core.createNamespacedPod({
      namespace: "default",
      body: podSpec("unhealthy", {
        ...envNode,
        livenessProbe: { tcpSocket: { port: 9 }, periodSeconds: 1, failureThreshold: 2 },
      }),
    });
    const pod = await waitPod(
      core,
      "unhealthy",
      (p) => (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1,
      "restarted by liveness",
    );
    // The runtime exits 0 on SIGTERM: the kill came from the probe, not from a crash.
    expect(pod.status?.containerStatuses?.[0]?.lastState?.terminated?.exitCode).to.equal(0);
    await core.deleteNamespacedPod({ name: "unhealthy", namespace: "default" });
  });

  it("runs k8s/ NATS, Redis and the registry: emptyDir args, 0.0.0.0 and Service names map to pod IPs", async () => {
    const ns = k.kubectl("apply", "-f", path.join(K8S_DIR, "namespace.yaml"));
    expect(ns.status, ns.stderr).to.equal(0);
    // NATS, Redis and the registry take their users and tokens from Secrets (as an operator does).
    const gen = spawnSync(process.execPath, [path.join(K8S_DIR, "../scripts/k8s-secrets.mjs")], {
      encoding: "utf8",
    });
    expect(gen.status, gen.stderr).to.equal(0);
    const secretsDir = mkdtempSync(path.join(tmpdir(), "fizz-secrets-"));
    writeFileSync(path.join(secretsDir, "secrets.yaml"), gen.stdout, { mode: 0o600 });
    const secrets = k.kubectl("apply", "-f", path.join(secretsDir, "secrets.yaml"));
    rmSync(secretsDir, { recursive: true, force: true });
    expect(secrets.status, secrets.stderr).to.equal(0);
    for (const f of ["rbac.yaml", "nats.yaml", "redis.yaml", "registry.yaml"]) {
      const r = k.kubectl("apply", "-f", path.join(K8S_DIR, f));
      expect(r.status, r.stderr).to.equal(0);
    }
    let seen: unknown;
    const ready = (label: string) =>
      waitFor(
        async () => {
          const pods = (
            await core.listNamespacedPod({
              namespace: "fizz",
              labelSelector: `app.kubernetes.io/name=${label}`,
            })
          ).items;
          seen = pods.map((p) => p.status?.containerStatuses);
          return pods.find(isReady);
        },
        { timeoutMs: 60_000, intervalMs: 250, what: `${label} ready` },
      ).catch((err: Error) =>
        Promise.reject(new Error(`${err.message}; statuses: ${JSON.stringify(seen)}`)),
      );
    const nats = await ready("nats");
    const redis = await ready("redis");
    expect(await tcpExchange(nats.status!.podIP!, 4222, undefined)).to.match(/^INFO /);
    // Reachable at its pod IP, and locked: the default user is off.
    expect(await tcpExchange(redis.status!.podIP!, 6379, "PING\r\n")).to.match(/^-NOAUTH/);
    // -sd /data became the pod's emptyDir: JetStream writes there.
    const natsDir = node.pods().find((p) => p.name === nats.metadata?.name)?.dir;
    expect(
      readFileSync(
        node.pods().find((p) => p.name === nats.metadata?.name)!.containers[0]!.logFile!,
        "utf8",
      ),
    ).to.include(`${natsDir}/volumes/data`);
    // The registry's readiness (/readyz) needs NATS and Redis, reached as nats://nats:4222 and redis://redis:6379.
    const registry = await ready("registry");
    expect((await httpGet(`http://${registry.status?.podIP}:8081/healthz`)).status).to.equal(200);
  });

  it("gives a pod its service account as KUBECONFIG: a real bound token, with that account's RBAC", async () => {
    for (const f of ["namespace.yaml", "rbac.yaml"])
      k.kubectl("apply", "-f", path.join(K8S_DIR, f));
    const body = podSpec(
      "as-sa",
      { image: "node:20-alpine", command: ["node", "-e", WHOAMI] },
      { restartPolicy: "Never", serviceAccountName: "fizz-poolkeeper" },
    );
    await core.createNamespacedPod({ namespace: "fizz", body });
    await waitFor(
      async () =>
        (await core.readNamespacedPod({ name: "as-sa", namespace: "fizz" })).status?.phase ===
        "Succeeded",
      {
        timeoutMs: 20_000,
        intervalMs: 200,
        what: "as-sa Succeeded",
      },
    );
    const log = readFileSync(
      node.pods().find((p) => p.name === "as-sa")!.containers[0]!.logFile!,
      "utf8",
    );
    expect(log).to.include("pods 200").and.include("secrets 403");
  });

  it("kills every process it started when stopped", async () => {
    await core.createNamespacedPod({ namespace: "default", body: podSpec("last", envNode) });
    await waitPod(core, "last", isReady, "Ready");
    const pids = node
      .pods()
      .flatMap((p) => p.containers.map((c) => c.pid))
      .filter((p): p is number => p !== undefined);
    expect(pids.length).to.be.greaterThan(0);
    await node.stop();
    expect(pids.filter(processAlive)).to.deep.equal([]);
  });
});
