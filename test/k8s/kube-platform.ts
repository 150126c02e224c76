import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { CoreV1Api, KubeConfig, NetworkingV1Api, type V1Pod } from "@kubernetes/client-node";
import { runtimeOfImage } from "@fizz/events";
import { defaultImageMap, startProcnode, type ImageMap, type Procnode } from "@fizz/procnode";
import { startK8sLite, type K8sLite } from "@fizz/testkit";
import { ROOT, startPlatform, type Platform } from "../e2e/helpers";

const K8S_DIR = path.join(ROOT, "k8s");
/** The namespace of k8s/namespace.yaml: the platform's pods and every function pod run there. */
export const NS = "fizz";
const NODE = "procnode-1";

/**
 * The platform on the kubernetes backend, as packages.k8s.test.ts runs it: a real kube-apiserver
 * (k8s-lite) with k8s/namespace.yaml and rbac.yaml applied, one procnode running its pods as local
 * processes, and the services as `npm start` launches them with the poolkeeper on the kubernetes
 * backend, acting as the fizz-poolkeeper service account (so it is held to k8s/rbac.yaml).
 * Cheaper than deploying every service into the cluster (platform.k8s.test.ts does that once).
 */
export interface KubePlatform {
  k: K8sLite;
  node: Procnode;
  platform: Platform;
  core: CoreV1Api;
  net: NetworkingV1Api;
  /** `kubectl ...` with the admin kubeconfig; throws with stderr unless it exits 0. */
  kubectl(...args: string[]): string;
  stop(): Promise<void>;
}

export async function startKubePlatform(workDir: string): Promise<KubePlatform> {
  const k = await startK8sLite();
  let node: Procnode | undefined;
  try {
    const kubectl = (...args: string[]) => {
      const r = k.kubectl(...args);
      if (r.status !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
      return r.stdout;
    };
    for (const f of ["namespace.yaml", "rbac.yaml"]) kubectl("apply", "-f", path.join(K8S_DIR, f));
    const kc = new KubeConfig();
    kc.loadFromFile(k.kubeconfig);
    node = await startProcnode({
      kubeconfig: k.nodeKubeconfig(NODE),
      lookupKubeconfig: k.kubeconfig,
      nodeName: NODE,
      images: pythonAsProcessBackend,
    });
    const platform = await startPlatform({
      FIZZ_POOLKEEPER_BACKEND: "kubernetes",
      FIZZ_KUBECONFIG: await serviceAccountKubeconfig(k, workDir),
      FIZZ_POOLKEEPER_NAMESPACE: NS,
      // A Node package's first call writes ~2,800 files and loads the redis client: seconds on a
      // busy 2-core machine, near the 10 s default. These tests are about what the guestbook does.
      FIZZ_SPECIALIZE_TIMEOUT_MS: "60000",
      FIZZ_LEASE_TIMEOUT_MS: "90000",
    });
    const started = node;
    return {
      k,
      node: started,
      platform,
      core: kc.makeApiClient(CoreV1Api),
      net: kc.makeApiClient(NetworkingV1Api),
      kubectl,
      stop: async () => {
        await platform.stop();
        await started.stop();
        await k.stop();
      },
    };
  } catch (err) {
    await node?.stop();
    await k.stop();
    throw err;
  }
}

/** Debian's interpreter, which the process backend runs Python instances with as root. */
const SYSTEM_PYTHON = "/usr/bin/python3";

/**
 * fizz/env-python pods run the Python the process backend runs (services/poolkeeper config.ts):
 * Debian's when it is there, where a function's imports (Flask, redis-py) are installed with apt.
 * procnode's default is `python3` from PATH, which may be a pyenv build with other packages.
 */
const pythonAsProcessBackend: ImageMap = (image) => {
  const run = defaultImageMap(image);
  if (!run || runtimeOfImage(image) !== "python" || !existsSync(SYSTEM_PYTHON)) return run;
  return { ...run, command: [SYSTEM_PYTHON, ...run.command.slice(1)] };
};

/** A kubeconfig holding a token of the fizz-poolkeeper service account (k8s/rbac.yaml). */
export async function serviceAccountKubeconfig(k: K8sLite, dir: string): Promise<string> {
  const token = k.kubectl("create", "token", "fizz-poolkeeper", "-n", NS, "--duration=2h");
  if (token.status !== 0) throw new Error(`kubectl create token: ${token.stderr}`);
  const file = path.join(dir, "poolkeeper.kubeconfig");
  await writeFile(
    file,
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
    { mode: 0o600 },
  );
  return file;
}

/** The `fizz` CLI as a user runs it (`npx fizz`), with the given environment on top of the test's. */
export function fizzCli(
  p: Platform,
  args: string[],
  opts: { cwd: string; env?: Record<string, string> },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    ...process.env,
    FIZZ_REGISTRY_URL: p.registryUrl,
    FIZZ_GATEWAY_URL: p.gatewayUrl,
    FIZZ_TOKEN: p.adminToken,
    ...opts.env,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(ROOT, "node_modules", ".bin", "fizz"), args, {
      cwd: opts.cwd,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

export function isReady(x: V1Pod): boolean {
  return !!x.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
}

/** The tail of every container log procnode holds (there is no `kubectl logs` without a kubelet). */
export function podLogs(node: Procnode, lines = 40): string {
  const out: string[] = [];
  for (const pod of node.pods()) {
    for (const c of pod.containers) {
      const log =
        c.logFile && existsSync(c.logFile)
          ? readFileSync(c.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n")
          : "(no log)";
      out.push(`--- ${pod.namespace}/${pod.name} [${c.name}] ${c.state}\n${log}`);
    }
  }
  return out.join("\n");
}
