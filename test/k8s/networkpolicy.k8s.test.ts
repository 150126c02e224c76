import { BlockList, isIPv6 } from "node:net";
import path from "node:path";
import { startK8sLite, type K8sLite } from "@fizz/testkit";
import type {
  V1LabelSelector,
  V1NetworkPolicy,
  V1NetworkPolicyPeer,
} from "@kubernetes/client-node";
import { expect } from "chai";
import { environment } from "../../services/poolkeeper/test/harness";
import { podManifest } from "../../services/poolkeeper/src/kube-pods";

const K8S_DIR = path.resolve(import.meta.dirname, "../../k8s");
const NS = "fizz";

type Labels = Record<string, string>;

/** Kubernetes label-selector semantics (matchLabels and the four operators). */
function selects(sel: V1LabelSelector | undefined, labels: Labels): boolean {
  if (!sel) return true;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = e.key in labels;
    const inValues = has && (e.values ?? []).includes(labels[e.key]!);
    const ok =
      e.operator === "Exists"
        ? has
        : e.operator === "DoesNotExist"
          ? !has
          : e.operator === "In"
            ? inValues
            : !inValues;
    if (!ok) return false;
  }
  return true;
}

/** Whether a peer (without ipBlock) admits a pod with these labels in a namespace with these. */
function peerAdmitsPod(peer: V1NetworkPolicyPeer, pod: Labels, ns: Labels): boolean {
  if (peer.ipBlock) return false;
  // No namespaceSelector: the policy's own namespace.
  const nsOk = peer.namespaceSelector
    ? selects(peer.namespaceSelector, ns)
    : ns["kubernetes.io/metadata.name"] === NS;
  return nsOk && selects(peer.podSelector, pod);
}

function peerAdmitsIp(peer: V1NetworkPolicyPeer, ip: string): boolean {
  const block = peer.ipBlock;
  if (!block) return false;
  const fam = (c: string) => (c.includes(":") ? "ipv6" : "ipv4");
  const within = (cidr: string) => {
    const [addr, bits] = cidr.split("/") as [string, string];
    if (fam(addr) !== (isIPv6(ip) ? "ipv6" : "ipv4")) return false;
    const list = new BlockList();
    list.addSubnet(addr, Number(bits), fam(addr));
    return list.check(ip, fam(addr));
  };
  return within(block.cidr) && !(block.except ?? []).some(within);
}

/**
 * k8s/networkpolicy.yaml against a real kube-apiserver: accepted, stored as written, and (read
 * back from the server) selecting function pods and admitting only what it should. procnode does
 * not enforce NetworkPolicy, so this checks the policy's content, not its enforcement.
 */
describe("k8s/networkpolicy.yaml: function pods reach nothing inside the platform", function () {
  let k: K8sLite;
  let policy: V1NetworkPolicy;
  const fnNs: Labels = { "kubernetes.io/metadata.name": NS };
  const systemNs: Labels = { "kubernetes.io/metadata.name": "kube-system" };
  const functionPod = podManifest(environment("node", "fizz/env-node", 1), "node-0123456789", {
    namespace: NS,
    resources: { requests: {}, limits: {} },
    imagePullPolicy: "IfNotPresent",
    runAsUser: 65532,
    terminationGraceSeconds: 1,
    specializeToken: "t",
  }).metadata!.labels!;
  const platformPods: Record<string, Labels> = {};
  const clusterIps: Record<string, string> = {};

  before(async () => {
    k = await startK8sLite();
    const ns = k.kubectl("apply", "-f", path.join(K8S_DIR, "namespace.yaml"));
    expect(ns.status, ns.stderr).to.equal(0);
    // The whole kustomization for real: real Services with ClusterIPs to check the policy against.
    const r = k.kubectl("apply", "--server-side", "-k", K8S_DIR);
    expect(r.status, r.stderr).to.equal(0);
    const got = k.kubectl("get", "networkpolicy", "fizz-functions", "-n", NS, "-o", "json");
    expect(got.status, got.stderr).to.equal(0);
    policy = JSON.parse(got.stdout) as V1NetworkPolicy;
    for (const kind of ["deployments", "statefulsets"]) {
      const list = JSON.parse(k.kubectl("get", kind, "-n", NS, "-o", "json").stdout) as {
        items: Array<{
          metadata: { name: string };
          spec: { template: { metadata: { labels: Labels } } };
        }>;
      };
      for (const d of list.items) platformPods[d.metadata.name] = d.spec.template.metadata.labels;
    }
    const svcs = JSON.parse(k.kubectl("get", "services", "-A", "-o", "json").stdout) as {
      items: Array<{ metadata: { name: string; namespace: string }; spec: { clusterIP?: string } }>;
    };
    for (const s of svcs.items)
      if (s.spec.clusterIP && s.spec.clusterIP !== "None")
        clusterIps[`${s.metadata.namespace}/${s.metadata.name}`] = s.spec.clusterIP;
    // The API server's own address, where the server publishes it (k8s-lite may not).
    const ep = k.kubectl("get", "endpoints", "kubernetes", "-n", "default", "-o", "json");
    if (ep.status === 0) {
      const parsed = JSON.parse(ep.stdout) as {
        subsets?: Array<{ addresses?: Array<{ ip: string }> }>;
      };
      for (const a of parsed.subsets?.flatMap((s) => s.addresses ?? []) ?? [])
        clusterIps[`apiserver endpoint ${a.ip}`] = a.ip;
    }
  });
  after(async () => {
    await k?.stop();
  });

  it("selects function pods, and no platform pod, for both ingress and egress", () => {
    expect(policy.spec!.policyTypes).to.have.members(["Ingress", "Egress"]);
    expect(selects(policy.spec!.podSelector, functionPod)).to.equal(true);
    expect(Object.keys(platformPods)).to.include.members(["gateway", "nats", "redis", "registry"]);
    for (const [name, labels] of Object.entries(platformPods))
      expect(selects(policy.spec!.podSelector, labels), name).to.equal(false);
  });

  it("admits ingress only from the gateway and the poolkeeper, on the runtime port", () => {
    const peers = policy.spec!.ingress!.flatMap(
      (r) => (r as { from?: V1NetworkPolicyPeer[] }).from ?? [],
    );
    for (const [name, labels] of Object.entries(platformPods)) {
      const admitted = peers.some((p) => peerAdmitsPod(p, labels, fnNs));
      expect(admitted, name).to.equal(name === "gateway" || name === "poolkeeper");
    }
    // The attack: another function's pod port-scanning this one.
    expect(peers.some((p) => peerAdmitsPod(p, functionPod, fnNs))).to.equal(false);
    expect(peers.some((p) => p.ipBlock)).to.equal(false);
    for (const r of policy.spec!.ingress!)
      expect(r.ports).to.deep.equal([{ protocol: "TCP", port: 8888 }]);
  });

  it("denies egress to NATS, Redis, the registry, every service, the API server and other function pods", () => {
    const peers = policy.spec!.egress!.flatMap((r) => r.to ?? []);
    expect(Object.keys(clusterIps)).to.include.members([
      "fizz/nats",
      "fizz/redis",
      "fizz/registry",
      "default/kubernetes",
    ]);
    for (const [what, ip] of Object.entries(clusterIps))
      expect(
        peers.some((p) => peerAdmitsIp(p, ip)),
        `${what} ${ip}`,
      ).to.equal(false);
    for (const [name, labels] of Object.entries(platformPods))
      expect(
        peers.some((p) => peerAdmitsPod(p, labels, fnNs)),
        name,
      ).to.equal(false);
    expect(peers.some((p) => peerAdmitsPod(p, functionPod, fnNs))).to.equal(false);
    // Typical pod IPs, the cloud metadata endpoint, loopback (procnode's pod IPs), IPv6 private.
    for (const ip of [
      "10.244.1.5",
      "172.17.0.2",
      "192.168.1.1",
      "100.64.0.1",
      "169.254.169.254",
      "127.0.0.2",
      "fd00::1",
      "fe80::1",
    ])
      expect(
        peers.some((p) => peerAdmitsIp(p, ip)),
        ip,
      ).to.equal(false);
  });

  it("allows DNS through kube-dns and the public internet", () => {
    const rules = policy.spec!.egress!;
    const dns = rules.find((r) => r.ports?.some((p) => p.port === 53));
    expect(dns?.to?.some((p) => peerAdmitsPod(p, { "k8s-app": "kube-dns" }, systemNs))).to.equal(
      true,
    );
    const peers = rules.flatMap((r) => r.to ?? []);
    for (const ip of ["1.1.1.1", "140.82.112.3", "2606:4700::1111"])
      expect(
        peers.some((p) => peerAdmitsIp(p, ip)),
        ip,
      ).to.equal(true);
  });
});
