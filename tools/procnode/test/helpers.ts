import net from "node:net";
import { CoreV1Api, KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { waitFor } from "@fizz/testkit";

export function adminCore(kubeconfig: string): CoreV1Api {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return kc.makeApiClient(CoreV1Api);
}

export function podSpec(
  name: string,
  container: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels: { test: name } },
    spec: {
      containers: [{ name: "main", ...container }],
      terminationGracePeriodSeconds: 2,
      ...extra,
    },
  };
}

export async function readPod(
  core: CoreV1Api,
  name: string,
  namespace = "default",
): Promise<V1Pod | undefined> {
  try {
    return await core.readNamespacedPod({ name, namespace });
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

export function isReady(pod: V1Pod | undefined): boolean {
  return !!pod?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
}

export async function waitPod(
  core: CoreV1Api,
  name: string,
  check: (p: V1Pod) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<V1Pod> {
  let last: V1Pod | undefined;
  try {
    return await waitFor(
      async () => {
        last = await readPod(core, name);
        return last && check(last) ? last : undefined;
      },
      { timeoutMs, intervalMs: 200, what: `pod ${name}: ${what}` },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last status: ${JSON.stringify(last?.status)}`);
  }
}

export async function httpGet(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  return { status: res.status, body: await res.text() };
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** One request/response line over raw TCP (NATS greets with INFO; Redis answers PING with +PONG). */
export function tcpExchange(host: string, port: number, send: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    let buf = "";
    sock.setTimeout(3000, () => sock.destroy(new Error(`no answer from ${host}:${port}`)));
    sock.once("connect", () => send && sock.write(send));
    sock.on("data", (d: Buffer) => {
      buf += d.toString();
      if (buf.includes("\r\n")) {
        sock.destroy();
        resolve(buf);
      }
    });
    sock.once("error", reject);
  });
}

// Run in a pod: lists pods (allowed by k8s/rbac.yaml) and secrets (not) with the pod's KUBECONFIG.
export const WHOAMI = `
const fs = require("fs"), https = require("https");
const kc = JSON.parse(fs.readFileSync(process.env.KUBECONFIG, "utf8"));
const c = kc.clusters[0].cluster, token = fs.readFileSync(kc.users[0].user["token-file"], "utf8");
const get = (p) => new Promise((ok) => https.get(c.server + p, { ca: fs.readFileSync(c["certificate-authority"]), headers: { Authorization: "Bearer " + token } }, (r) => { r.resume(); ok(r.statusCode); }));
(async () => console.log("pods", await get("/api/v1/namespaces/fizz/pods"), "secrets", await get("/api/v1/namespaces/fizz/secrets")))();
`;
