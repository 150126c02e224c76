import { writeFile } from "node:fs/promises";
import path from "node:path";
import { Codecs, Streams, subjects, type Invocation, type WatchTrigger } from "@fizz/events";
import {
  connectNats,
  createLogger,
  ensureBus,
  silentLogger,
  type Logger,
  type NatsConnection,
} from "@fizz/kit";
import { startK8sLite, startNats, waitFor, type K8sLite, type TestServer } from "@fizz/testkit";
import { CoreV1Api, KubeConfig, type V1ConfigMap } from "@kubernetes/client-node";
import { AckPolicy, jetstream, jetstreamManager, type ConsumerMessages } from "@nats-io/jetstream";
import { loadConfig, start, type Kubewatcher } from "../src/index";

export { watchTrigger } from "./fixtures";

const K8S_DIR = path.resolve(import.meta.dirname, "../../../k8s");

/**
 * Real k8s-lite (kube-apiserver) and nats-server; kubewatchers talk to the apiserver as the
 * fizz-kubewatcher service account of k8s/rbac.yaml (read-only ClusterRole), so every call is
 * checked against the RBAC we ship. The test plays the registry (answers registry.list, publishes
 * registry.changed.watchtriggers) and reads what was delivered from the FIZZ_INVOCATIONS stream
 * with its own JetStream consumer, as the gateway's invoker would.
 */
export class KubeHarness {
  k!: K8sLite;
  nats!: TestServer;
  nc!: NatsConnection;
  core!: CoreV1Api;
  adminConfig!: KubeConfig;
  saKubeconfig!: string;
  readonly s = subjects();
  readonly triggers = new Map<string, WatchTrigger>();
  readonly invocations: Invocation[] = [];
  readonly running = new Set<Kubewatcher>();
  private messages: ConsumerMessages | undefined;
  readonly logger: Logger = process.env.KW_TEST_LOG
    ? createLogger("kubewatcher", process.env.KW_TEST_LOG)
    : silentLogger();

  async setUp(): Promise<void> {
    [this.k, this.nats] = await Promise.all([startK8sLite(), startNats()]);
    for (const f of ["namespace.yaml", "rbac.yaml"]) {
      const r = this.k.kubectl("apply", "-f", path.join(K8S_DIR, f));
      if (r.status !== 0) throw new Error(`kubectl apply ${f}: ${r.stderr}`);
    }
    this.saKubeconfig = await this.serviceAccountKubeconfig();
    this.adminConfig = new KubeConfig();
    this.adminConfig.loadFromFile(this.k.kubeconfig);
    this.core = this.adminConfig.makeApiClient(CoreV1Api);
    this.nc = await connectNats({ url: this.nats.url, name: "test", logger: silentLogger() });
    this.answerRegistry();
    await this.consumeInvocations();
  }

  async tearDown(): Promise<void> {
    await Promise.all([...this.running].map((kw) => kw.stop()));
    await this.messages?.close();
    await this.nc?.close();
    await Promise.all([this.nats?.cleanup(), this.k?.stop()]);
  }

  async startKubewatcher(extra: Record<string, string> = {}): Promise<Kubewatcher> {
    const kw = await start(
      loadConfig({
        FIZZ_NATS_URL: this.nats.url,
        FIZZ_KUBECONFIG: this.saKubeconfig,
        FIZZ_KUBEWATCHER_LEADER_TTL_MS: "2000",
        FIZZ_LOG_LEVEL: "silent",
        ...extra,
      }),
      { logger: this.logger },
    );
    this.running.add(kw);
    await kw.synced;
    return kw;
  }

  async stopKubewatcher(kw: Kubewatcher): Promise<void> {
    this.running.delete(kw);
    await kw.stop();
  }

  /** Environment for a kubewatcher in its own process (main.ts). */
  childEnv(extra: Record<string, string> = {}): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !k.startsWith("FIZZ_")) env[k] = v;
    return {
      ...env,
      FIZZ_NATS_URL: this.nats.url,
      FIZZ_KUBECONFIG: this.saKubeconfig,
      FIZZ_KUBEWATCHER_LEADER_TTL_MS: "2000",
      FIZZ_LOG_LEVEL: "warn",
      FIZZ_PARENT_STDIN: "1",
      ...extra,
    };
  }

  // --- the registry -------------------------------------------------------------------------

  private answerRegistry(): void {
    this.nc.subscribe(this.s.registryList, {
      callback: (_e, m) => {
        const q = Codecs.registryList.request.decode(m.data).data;
        const items = q.kind === "watchtriggers" ? [...this.triggers.values()] : [];
        m.respond(Codecs.registryList.reply.encode({ items }, "registry-test"));
      },
    });
  }

  /** Stores the trigger and publishes registry.changed.watchtriggers, as the registry would. */
  async changed(op: "created" | "updated" | "deleted", t: WatchTrigger): Promise<void> {
    const k = `${t.metadata.namespace}/${t.metadata.name}`;
    if (op === "deleted") this.triggers.delete(k);
    else this.triggers.set(k, t);
    const { namespace, name, revision } = t.metadata;
    this.nc.publish(
      this.s.registryChanged("watchtriggers"),
      Codecs.registryChanged.encode(
        { kind: "watchtriggers", op, namespace, name, revision, object: t },
        "registry-test",
      ),
    );
    await this.nc.flush();
  }

  // --- what was delivered --------------------------------------------------------------------

  private async consumeInvocations(): Promise<void> {
    await ensureBus(this.nc, this.s);
    const jsm = await jetstreamManager(this.nc);
    await jsm.consumers.add(Streams.invocations, {
      durable_name: "kubewatcher-test",
      ack_policy: AckPolicy.Explicit,
    });
    const consumer = await jetstream(this.nc).consumers.get(
      Streams.invocations,
      "kubewatcher-test",
    );
    this.messages = await consumer.consume();
    void (async () => {
      for await (const m of this.messages!) {
        this.invocations.push(Codecs.invoke.decode(m.data).data);
        m.ack();
      }
    })();
  }

  /** Invocations for one trigger, in the order they were stored. */
  of(trigger: string): Invocation[] {
    return this.invocations.filter((i) => i.trigger === trigger);
  }

  async waitFor(trigger: string, n: number, timeoutMs = 20_000): Promise<Invocation[]> {
    await waitFor(() => this.of(trigger).length >= n, {
      timeoutMs,
      what: `${n} invocations for ${trigger} (have ${this.of(trigger).length})`,
    });
    return this.of(trigger);
  }

  // --- Kubernetes ----------------------------------------------------------------------------

  /**
   * Creates a namespace and waits for the controller-manager's kube-root-ca.crt ConfigMap in it,
   * so a trigger watching every ConfigMap there does not see that one appear.
   */
  async namespace(name: string): Promise<void> {
    await this.core.createNamespace({ body: { metadata: { name } } });
    await waitFor(
      async () => (await this.core.listNamespacedConfigMap({ namespace: name })).items.length > 0,
      { timeoutMs: 20_000, what: `kube-root-ca.crt in ${name}` },
    );
  }

  async createConfigMap(ns: string, name: string, labels: Record<string, string> = {}, data = {}) {
    return this.core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name, labels }, data },
    });
  }

  async updateConfigMap(
    ns: string,
    name: string,
    data: Record<string, string>,
  ): Promise<V1ConfigMap> {
    const cm = await this.core.readNamespacedConfigMap({ name, namespace: ns });
    cm.data = data;
    return this.core.replaceNamespacedConfigMap({ name, namespace: ns, body: cm });
  }

  async deleteConfigMap(ns: string, name: string): Promise<void> {
    await this.core.deleteNamespacedConfigMap({ name, namespace: ns });
  }

  async waitWatching(kw: Kubewatcher, id: string, timeoutMs = 20_000): Promise<void> {
    await waitFor(() => kw.status()[id]?.state === "watching", {
      timeoutMs,
      what: `${id} watching (is ${JSON.stringify(kw.status()[id])})`,
    });
  }

  private async serviceAccountKubeconfig(): Promise<string> {
    const token = this.k.kubectl(
      "create",
      "token",
      "fizz-kubewatcher",
      "-n",
      "fizz",
      "--duration=2h",
    );
    if (token.status !== 0) throw new Error(`kubectl create token: ${token.stderr}`);
    const file = path.join(this.k.dir, "kubewatcher.kubeconfig");
    await writeFile(
      file,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [
          {
            name: "k8s-lite",
            cluster: {
              server: this.k.server,
              "certificate-authority": path.join(this.k.dir, "ca.crt"),
            },
          },
        ],
        users: [{ name: "fizz-kubewatcher", user: { token: token.stdout.trim() } }],
        contexts: [
          { name: "kubewatcher", context: { cluster: "k8s-lite", user: "fizz-kubewatcher" } },
        ],
        "current-context": "kubewatcher",
      }),
    );
    return file;
  }
}

export function header(inv: Invocation, name: string): string | undefined {
  const k = Object.keys(inv.headers).find((h) => h.toLowerCase() === name.toLowerCase());
  return k === undefined ? undefined : inv.headers[k];
}

export function bodyOf(inv: Invocation): {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid: string;
    resourceVersion: string;
    labels?: Record<string, string>;
  };
  data?: Record<string, string>;
} {
  // The kubewatcher's own encoding of the object it published; the tests read its fields.
  return JSON.parse(Buffer.from(inv.body, "base64").toString("utf8")) as ReturnType<typeof bodyOf>;
}

/** `ADDED a`, `MODIFIED a`: what a trigger saw, compactly. */
export function seen(invs: Invocation[]): string[] {
  return invs.map(
    (i) => `${header(i, "X-Kubernetes-Event-Type")} ${header(i, "X-Kubernetes-Name")}`,
  );
}
