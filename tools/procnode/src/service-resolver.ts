import type { Logger } from "@fizz/kit";
import type { V1Pod, V1Service } from "@kubernetes/client-node";
import { errorMessage, isNotFound, statusOf, type Kube } from "./kube";

/** Ports a URL implies when it names none (used only when the Service has several ports). */
const SCHEME_PORTS: Record<string, number> = {
  http: 80,
  https: 443,
  ws: 80,
  wss: 443,
  nats: 4222,
  redis: 6379,
  rediss: 6379,
};

// scheme://[userinfo@]host[:port] — host a DNS name: `svc`, `svc.ns`, `svc.ns.svc[.cluster.local]`.
const URL_RE =
  /\b([a-z][a-z0-9+.-]*):\/\/((?:[^@/\s,]*@)?)([a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9-]+)*)(?::(\d+))?/gi;

export type Rewrite =
  { value: string; pending?: undefined } | { value?: undefined; pending: string };

/**
 * There is no cluster DNS and no kube-proxy, so `nats://nats:4222` cannot resolve. Instead, an env
 * value naming a Service of the pod's namespace in a URL is rewritten to a pod backing that
 * Service (a ready one when there is one): `nats://nats:4222` → `nats://127.0.0.3:4222` (its podIP and targetPort). The address is
 * taken once, when the container starts: if that pod later moves, the process keeps the old one.
 */
export class ServiceResolver {
  constructor(
    private readonly kube: Kube,
    private readonly localPods: () => V1Pod[],
    private readonly logger: Logger,
  ) {}

  /** The rewritten value, or `pending` naming a Service that exists but has no pod with an IP yet. */
  async rewrite(value: string, namespace: string): Promise<Rewrite> {
    const matches = [...value.matchAll(URL_RE)];
    if (matches.length === 0) return { value };
    let out = "";
    let last = 0;
    for (const m of matches) {
      const [whole, scheme = "", userinfo = "", host = "", port] = m;
      const target = await this.resolve(
        scheme.toLowerCase(),
        host.toLowerCase(),
        port ? Number(port) : undefined,
        namespace,
      );
      if (target && "pending" in target) return { pending: target.pending };
      out +=
        value.slice(last, m.index) + (target ? `${scheme}://${userinfo}${target.address}` : whole);
      last = (m.index ?? 0) + whole.length;
    }
    return { value: out + value.slice(last) };
  }

  private async resolve(
    scheme: string,
    host: string,
    port: number | undefined,
    podNamespace: string,
  ): Promise<{ address: string } | { pending: string } | undefined> {
    const parts = host.split(".");
    const [name = "", ns = podNamespace, ...rest] = parts;
    const suffix = rest.join(".");
    if (parts.length > 2 && suffix !== "svc" && suffix !== "svc.cluster.local") return undefined;
    if (/^\d+$/.test(name) || name === "localhost") return undefined;
    let svc: V1Service;
    try {
      svc = await this.kube.lookup.readNamespacedService({ name, namespace: ns });
    } catch (err) {
      if (!isNotFound(err))
        this.logger.warn(
          { service: `${ns}/${name}`, err: errorMessage(err) },
          "service look-up failed",
        );
      return undefined;
    }
    const selector = svc.spec?.selector;
    const ports = svc.spec?.ports ?? [];
    if (!selector || Object.keys(selector).length === 0 || ports.length === 0) return undefined;
    const wanted = port ?? (ports.length === 1 ? ports[0]?.port : SCHEME_PORTS[scheme]);
    const sp = ports.find((p) => p.port === wanted);
    if (!sp) return undefined;
    const all = (await this.podsFor(ns, selector))
      .filter((p) => !p.metadata?.deletionTimestamp && !!p.status?.podIP)
      .sort((a, b) => (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? ""));
    // A ready pod first. Failing that, a running one: in a cluster the Service name resolves
    // whether or not an endpoint is ready (connections wait or fail until one is), so two
    // Deployments that name each other (the registry's FIZZ_GATEWAY_URL, the gateway waiting for
    // the registry's listing) must not wait on each other here either.
    for (const pod of [...all.filter(isReady), ...all.filter((p) => !isReady(p))]) {
      const target = targetPort(pod, sp.targetPort ?? sp.port);
      if (target !== undefined) return { address: `${pod.status?.podIP}:${target}` };
    }
    return { pending: `${ns}/${name}` };
  }

  private async podsFor(namespace: string, selector: Record<string, string>): Promise<V1Pod[]> {
    const labelSelector = Object.entries(selector)
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
    try {
      return (await this.kube.lookup.listNamespacedPod({ namespace, labelSelector })).items;
    } catch (err) {
      // A node identity may list only its own pods: fall back to those.
      if (statusOf(err) !== 403) throw err;
      return this.localPods().filter(
        (p) =>
          p.metadata?.namespace === namespace &&
          Object.entries(selector).every(([k, v]) => p.metadata?.labels?.[k] === v),
      );
    }
  }
}

function isReady(pod: V1Pod): boolean {
  return (
    !pod.metadata?.deletionTimestamp &&
    !!pod.status?.podIP &&
    !!pod.status.conditions?.some((c) => c.type === "Ready" && c.status === "True")
  );
}

function targetPort(pod: V1Pod, tp: number | string): number | undefined {
  if (typeof tp === "number") return tp;
  if (/^\d+$/.test(tp)) return Number(tp);
  for (const c of pod.spec?.containers ?? []) {
    const p = c.ports?.find((x) => x.name === tp);
    if (p) return p.containerPort;
  }
  return undefined;
}
