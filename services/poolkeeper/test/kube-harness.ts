import { writeFile } from "node:fs/promises";
import path from "node:path";
import { Codecs, type SpecializeRequest } from "@fizz/events";
import { request as natsRequest } from "@fizz/kit";
import { CoreV1Api, KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { startK8sLite, type K8sLite } from "@fizz/testkit";
import { request } from "undici";
import { Harness } from "./harness";

const K8S_DIR = path.resolve(import.meta.dirname, "../../../k8s");
export const NS = "fizz";

/**
 * The poolkeeper int-test harness (real NATS with JetStream, the test as the registry) plus a real
 * kube-apiserver from k8s-lite. The poolkeeper talks to it as the fizz-poolkeeper service account
 * of k8s/rbac.yaml, so every call it makes is checked against the Role we ship.
 */
export class KubeHarness extends Harness {
  k!: K8sLite;
  /** Admin client for the test's own look-ups. */
  core!: CoreV1Api;
  saKubeconfig!: string;

  async setUpAll(): Promise<void> {
    const [k] = await Promise.all([startK8sLite(), this.setUp()]);
    this.k = k;
    for (const f of ["namespace.yaml", "rbac.yaml"]) {
      const r = k.kubectl("apply", "-f", path.join(K8S_DIR, f));
      if (r.status !== 0) throw new Error(`kubectl apply ${f}: ${r.stderr}`);
    }
    const token = k.kubectl("create", "token", "fizz-poolkeeper", "-n", NS, "--duration=2h");
    if (token.status !== 0) throw new Error(`kubectl create token: ${token.stderr}`);
    this.saKubeconfig = path.join(k.dir, "poolkeeper.kubeconfig");
    await writeFile(
      this.saKubeconfig,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [
          {
            name: "k8s-lite",
            cluster: { server: k.server, "certificate-authority": path.join(k.dir, "ca.crt") },
          },
        ],
        users: [{ name: "fizz-poolkeeper", user: { token: token.stdout.trim() } }],
        contexts: [
          {
            name: "poolkeeper",
            context: { cluster: "k8s-lite", user: "fizz-poolkeeper", namespace: NS },
          },
        ],
        "current-context": "poolkeeper",
      }),
    );
    const kc = new KubeConfig();
    kc.loadFromFile(k.kubeconfig);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /** A poolkeeper on the kubernetes backend, as the service account. */
  startKube(extra: Record<string, string> = {}) {
    return this.startPoolkeeper({
      FIZZ_POOLKEEPER_BACKEND: "kubernetes",
      FIZZ_KUBECONFIG: this.saKubeconfig,
      FIZZ_POOLKEEPER_NAMESPACE: NS,
      FIZZ_KILL_GRACE_MS: "1000",
      ...extra,
    });
  }

  /** The poolkeeper's pods that are not being deleted, optionally narrowed by a label selector. */
  async pods(selector = ""): Promise<V1Pod[]> {
    const labelSelector = ["fizz.dev/managed-by=poolkeeper", selector].filter(Boolean).join(",");
    const list = await this.core.listNamespacedPod({ namespace: NS, labelSelector });
    return list.items.filter((p) => !p.metadata?.deletionTimestamp);
  }

  async podNames(selector = ""): Promise<string[]> {
    return (await this.pods(selector)).map((p) => p.metadata?.name ?? "").sort();
  }

  specialize(data: SpecializeRequest) {
    return natsRequest(this.nc, this.s.poolkeeperSpecialize, Codecs.poolkeeperSpecialize, data, {
      sender: "test",
      timeoutMs: 30_000,
    });
  }

  retire(instanceId: string) {
    return natsRequest(
      this.nc,
      this.s.poolkeeperRetire,
      Codecs.poolkeeperRetire,
      { instanceId, reason: "idle" },
      { sender: "test", timeoutMs: 20_000 },
    );
  }

  list() {
    return natsRequest(
      this.nc,
      this.s.poolkeeperList,
      Codecs.poolkeeperList,
      {},
      {
        sender: "test",
        timeoutMs: 5_000,
      },
    );
  }

  warm(name: string): number {
    return this.pk.pool.status({ namespace: "default", name })?.warm ?? -1;
  }

  starting(name: string): number {
    return this.pk.pool.status({ namespace: "default", name })?.starting ?? -1;
  }

  async tearDownAll(): Promise<void> {
    await this.tearDown();
    await this.k?.stop();
  }
}

/** GET as user traffic for `instanceId`. */
export async function call(address: string, instanceId: string) {
  const res = await request(address, {
    headers: { "x-fizz-instance": instanceId },
    signal: AbortSignal.timeout(5_000),
  });
  return { status: res.statusCode, text: (await res.body.text()).trim() };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
