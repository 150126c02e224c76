import { startProcnode, type Procnode } from "@fizz/procnode";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { request } from "undici";
import { environment } from "./harness";
import { KubeHarness, NS, call, median } from "./kube-harness";

/**
 * The kubernetes backend against a real kube-apiserver, controller-manager and scheduler
 * (k8s-lite), with real NATS (JetStream), the test playing the registry. The first part runs with no
 * node, so pods stay Pending: what is created, adopted and deleted is visible without running
 * anything. Then tools/procnode joins as a node and runs the pods as local processes with pod IPs
 * 127.0.0.N, and the pool goes through its whole life: Ready, specialize, refill, retire, death,
 * restart.
 */
describe("poolkeeper kubernetes backend (k8s-lite + procnode)", function () {
  this.timeout(120_000);
  const h = new KubeHarness();
  let node: Procnode | undefined;
  const fnRef = (name: string) => ({ namespace: "default", name, revision: 1 });
  const NODE_HELLO = "module.exports = async () => 'Hello, world!';\n";
  const PY_HELLO = 'def main():\n    print("Hello, world!")\n';

  before(async () => {
    await h.setUpAll();
    h.environments.set("node", environment("node", "fizz/env-node", 2));
    h.environments.set("python", environment("python", "fizz/env-python", 1));
    h.environments.set("cold", environment("cold", "fizz/env-node", 0));
    h.answerRegistry();
  });
  after(async () => {
    await h.pk?.stop();
    await node?.stop();
    await h.tearDownAll();
  });

  it("fills each pool with bare pods labelled by environment, as the least-privilege service account", async () => {
    await h.startKube();
    await h.pk.synced;
    await waitFor(async () => (await h.pods()).length === 3, { timeoutMs: 20_000, what: "3 pods" });
    const pods = await h.pods();
    for (const pod of pods) {
      const name = pod.metadata!.name!;
      const env = pod.metadata!.labels!["fizz.dev/environment"]!;
      expect(pod.metadata!.labels).to.deep.include({
        "fizz.dev/managed-by": "poolkeeper",
        "fizz.dev/environment-namespace": "default",
        "fizz.dev/state": "warm",
        "fizz.dev/instance": name,
      });
      expect(pod.spec).to.include({ restartPolicy: "Never", automountServiceAccountToken: false });
      const c = pod.spec!.containers[0]!;
      expect(c.image).to.equal(`fizz/env-${env}`);
      expect(c.env).to.deep.include({ name: "FIZZ_INSTANCE_ID", value: name });
      expect(c.readinessProbe?.httpGet?.path).to.equal("/healthz");
      expect(c.resources).to.deep.equal({
        requests: { cpu: "50m", memory: "64Mi" },
        limits: { cpu: "1", memory: "256Mi" },
      });
      // The containment as the apiserver stored it (docs/security.md): non-root, no privilege
      // escalation, no capabilities, read-only root, seccomp, only the documented variables.
      expect(pod.spec!.securityContext).to.deep.include({ runAsNonRoot: true, runAsUser: 65532 });
      expect(pod.spec!.securityContext!.seccompProfile).to.deep.equal({ type: "RuntimeDefault" });
      expect(pod.spec!.enableServiceLinks).to.equal(false);
      expect(c.securityContext).to.deep.equal({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ["ALL"] },
      });
      expect(c.env!.map((e) => e.name).sort()).to.deep.equal(
        [
          "FIZZ_INSTANCE_ID",
          "FIZZ_SPECIALIZE_TOKEN",
          "FIZZ_SECRETS_DIR",
          "FIZZ_CONFIGS_DIR",
          "HOME",
          "PORT",
          "PYTHONUNBUFFERED",
        ].sort(),
      );
      expect(pod.spec!.volumes!.map((v) => v.name).sort()).to.deep.equal([
        "configs",
        "secrets",
        "tmp",
        "userfunc",
      ]);
      // Secret values live in memory only, as the apiserver stored the pod.
      expect(pod.spec!.volumes!.find((v) => v.name === "secrets")?.emptyDir?.medium).to.equal(
        "Memory",
      );
      // No node yet: nothing runs them.
      expect(pod.status?.phase).to.equal("Pending");
    }
    expect(await h.podNames("fizz.dev/environment=node")).to.have.length(2);
    expect(h.starting("node")).to.equal(2);
    expect(h.starting("python")).to.equal(1);
  });

  it("after a restart adopts the pods it finds and creates none", async () => {
    const before = await h.podNames();
    await h.pk.stop();
    expect(await h.podNames(), "pods outlive the poolkeeper").to.deep.equal(before);
    await h.startKube();
    await h.pk.synced;
    await waitFor(() => h.starting("node") === 2 && h.starting("python") === 1);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await h.podNames()).to.deep.equal(before);
  });

  it("at start deletes the pods of an environment deleted while it was down, and a shrunk pool's surplus", async () => {
    await h.pk.stop();
    h.environments.delete("python");
    h.environments.set("node", environment("node", "fizz/env-node", 1, 2));
    await h.startKube();
    await h.pk.synced;
    await waitFor(
      async () =>
        (await h.podNames("fizz.dev/environment=python")).length === 0 &&
        (await h.podNames("fizz.dev/environment=node")).length === 1,
      { timeoutMs: 15_000, what: "orphan and surplus pods deleted" },
    );
    // Back as they were, through change events this time.
    await h.changed("created", environment("python", "fizz/env-python", 1));
    await h.changed("updated", environment("node", "fizz/env-node", 2, 3));
    await waitFor(async () => (await h.pods()).length === 3, { what: "pools refilled" });
  });

  it("pods become Ready once a node runs them; the pool holds them warm at http://<podIP>:8888", async () => {
    node = await startProcnode({
      kubeconfig: h.k.nodeKubeconfig("procnode-1"),
      lookupKubeconfig: h.k.kubeconfig,
      nodeName: "procnode-1",
      heartbeatMs: 2_000,
    });
    await waitFor(() => h.warm("node") === 2 && h.warm("python") === 1, {
      timeoutMs: 60_000,
      what: "warm pools",
    });
    for (const t of h.pk.pool.list()) {
      expect(t.instance.address).to.match(/^http:\/\/127\.0\.0\.\d+:8888$/);
      const res = await request(`${t.instance.address}/healthz`);
      expect(await res.body.json()).to.deep.include({ state: "warm" });
    }
    await waitFor(() => h.events.filter((e) => e.event === "ready").length >= 3);
    const ready = await request(`http://127.0.0.1:${h.pk.port}/readyz`);
    expect(await ready.body.json()).to.deep.include({
      checks: { nats: true, kubernetes: true },
    });
  });

  const warmMs: number[] = [];
  it("specializes node and python hello worlds over the pod IP, labels the pods specialized, and refills", async () => {
    for (const [env, file, src] of [
      ["node", "hello.js", NODE_HELLO],
      ["python", "hello.py", PY_HELLO],
    ] as const) {
      const code = await h.putCode(file, src);
      const t0 = performance.now();
      const { instance } = await h.specialize({
        environment: { namespace: "default", name: env },
        function: fnRef(`hello-${env}`),
        code,
        concurrency: 4,
      });
      warmMs.push(performance.now() - t0);
      expect(instance).to.include({ state: "specialized", backend: "kubernetes" });
      expect(instance.address).to.match(/^http:\/\/127\.0\.0\.\d+:8888$/);
      expect(await call(instance.address, instance.id)).to.deep.equal({
        status: 200,
        text: "Hello, world!",
      });
      await waitFor(
        async () =>
          (await h.podNames(`fizz.dev/state=specialized,fizz.dev/function=hello-${env}`))[0] ===
          instance.id,
        { what: `pod ${instance.id} labelled specialized` },
      );
    }
    const kubectl = h.k.kubectl("get", "pods", "-n", NS, "-l", "fizz.dev/state=specialized");
    expect(kubectl.stdout)
      .to.match(/node-[0-9a-f]{10}/)
      .and.match(/python-[0-9a-f]{10}/);
    await waitFor(() => h.warm("node") === 2 && h.warm("python") === 1, {
      timeoutMs: 30_000,
      what: "pools refilled",
    });
  });

  it("measures the specialize round trip from a warm pod and from an empty pool", async () => {
    const code = await h.putCode("hello.js", NODE_HELLO);
    for (let i = 0; i < 3; i++) {
      await waitFor(() => h.warm("node") === 2, { timeoutMs: 30_000, what: "node pool full" });
      const t0 = performance.now();
      await h.specialize({
        environment: { namespace: "default", name: "node" },
        function: fnRef(`warm-${i}`),
        code,
        concurrency: 1,
      });
      warmMs.push(performance.now() - t0);
    }
    // Empty pool: the pod is created for the request (scheduled, started, Ready, then specialized).
    const coldMs: number[] = [];
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      const { instance } = await h.specialize({
        environment: { namespace: "default", name: "cold" },
        function: fnRef(`cold-${i}`),
        code,
        concurrency: 1,
      });
      coldMs.push(performance.now() - t0);
      expect((await call(instance.address, instance.id)).text).to.equal("Hello, world!");
    }
    const fmt = (xs: number[]) => xs.map((m) => m.toFixed(1)).join(", ");
    console.log(
      `      specialize round trip, kubernetes backend: warm pod median ${median(warmMs).toFixed(1)} ms ` +
        `(${fmt(warmMs)}); empty pool ${fmt(coldMs)} ms`,
    );
    expect(median(warmMs)).to.be.below(500);
  });

  it("retire deletes the pod and says so", async () => {
    const { instance } = await h.specialize({
      environment: { namespace: "default", name: "node" },
      function: fnRef("short-lived"),
      code: await h.putCode("hello.js", NODE_HELLO),
      concurrency: 1,
    });
    expect(await h.retire(instance.id)).to.deep.equal({ retired: true });
    await waitFor(async () => !(await h.podNames()).includes(instance.id), {
      what: "retired pod deleted",
    });
    await waitFor(() =>
      h.events.some((e) => e.event === "retired" && e.instance.id === instance.id),
    );
    expect(h.events.some((e) => e.event === "died" && e.instance.id === instance.id)).to.equal(
      false,
    );
  });

  it("reports a pod whose process dies as died, removes the Failed pod and refills", async () => {
    const victim = h.pk.pool
      .list()
      .find((t) => t.state === "specialized" && t.function?.name === "hello-python")!;
    const pid = node!.pods().find((p) => p.name === victim.instance.id)?.containers[0]?.pid;
    expect(pid, "procnode runs the pod as a process").to.be.a("number");
    process.kill(pid!, "SIGKILL");
    await waitFor(
      () => h.events.some((e) => e.event === "died" && e.instance.id === victim.instance.id),
      { timeoutMs: 20_000, what: "died event" },
    );
    const died = h.events.find((e) => e.event === "died" && e.instance.id === victim.instance.id)!;
    expect(died.instance.function?.name).to.equal("hello-python");
    await waitFor(async () => !(await h.podNames()).includes(victim.instance.id), {
      what: "Failed pod deleted",
    });
    await waitFor(() => h.warm("python") === 1, { timeoutMs: 30_000, what: "python refilled" });
  });

  it("after a restart adopts warm and specialized pods as they are: same pods, still serving", async () => {
    await waitFor(() => h.warm("node") === 2 && h.warm("python") === 1, { timeoutMs: 30_000 });
    const specialized = h.pk.pool.list().filter((t) => t.state === "specialized");
    const hello = specialized.find((t) => t.function?.name === "hello-node")!;
    const before = await h.podNames();
    await h.pk.stop();
    await h.startKube();
    await h.pk.synced;
    await waitFor(() => h.warm("node") === 2 && h.warm("python") === 1, {
      timeoutMs: 30_000,
      what: "adopted warm pods",
    });
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await h.podNames(), "no pod created or lost").to.deep.equal(before);
    const listed = (await h.list()).instances.filter((i) => i.state === "specialized");
    expect(listed.map((i) => i.id).sort()).to.deep.equal(
      specialized.map((t) => t.instance.id).sort(),
    );
    expect(listed.find((i) => i.id === hello.instance.id)).to.deep.include({
      address: hello.instance.address,
      function: fnRef("hello-node"),
      concurrency: 4,
    });
    expect(await call(hello.instance.address, hello.instance.id)).to.deep.equal({
      status: 200,
      text: "Hello, world!",
    });
    // An adopted warm pod specializes like any other.
    const { instance } = await h.specialize({
      environment: { namespace: "default", name: "node" },
      function: fnRef("after-restart"),
      code: await h.putCode("hello.js", NODE_HELLO),
      concurrency: 1,
    });
    expect(before).to.include(instance.id);
  });
});
