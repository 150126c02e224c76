import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { waitFor } from "./ports";

const ROOT = path.resolve(import.meta.dirname, "../../..");

/**
 * The k8s-lite binary (a real kube-apiserver, controller-manager, scheduler and etcd), or
 * undefined when it has not been built. Tests never build it: `scripts/build-k8s-lite.sh` does,
 * once, and `.ci/run` runs that first.
 */
export function k8sLiteBinary(): string | undefined {
  const fromEnv = process.env.FIZZ_K8S_LITE_BIN;
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  const r = spawnSync("bash", [path.join(ROOT, "scripts/build-k8s-lite.sh"), "--cached"], {
    encoding: "utf8",
  });
  const bin = r.stdout.trim();
  return r.status === 0 && bin && existsSync(bin) ? bin : undefined;
}

export interface K8sLite {
  bin: string;
  dir: string;
  /** Admin kubeconfig (cluster-admin). */
  kubeconfig: string;
  server: string;
  /** Runs the kubectl built into k8s-lite with the admin kubeconfig. */
  kubectl(...args: string[]): { status: number; stdout: string; stderr: string };
  /** A kubeconfig for a node agent named `node` (system:node:<node>). */
  nodeKubeconfig(node: string): string;
  stop(): Promise<void>;
}

export async function startK8sLite(): Promise<K8sLite> {
  const bin = k8sLiteBinary();
  if (!bin) throw new Error("k8s-lite is not built: run scripts/build-k8s-lite.sh");
  const dir = await mkdtemp(path.join(tmpdir(), "fizz-k8s-"));
  const child: ChildProcess = spawn(bin, ["up", "--dir", dir], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr?.on("data", (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (c) => reject(new Error(`k8s-lite up exited ${c}: ${log}`))),
  );
  exited.catch(() => undefined);
  await Promise.race([
    waitFor(() => existsSync(path.join(dir, "ready")), {
      timeoutMs: 120_000,
      intervalMs: 200,
      what: "k8s-lite",
    }),
    exited,
  ]);
  const kubeconfig = path.join(dir, "kubeconfig");
  const server = readFileSync(path.join(dir, "ready"), "utf8").trim();
  const kubectl = (...args: string[]) => {
    const r = spawnSync(bin, ["kubectl", "--kubeconfig", kubeconfig, ...args], {
      encoding: "utf8",
    });
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  return {
    bin,
    dir,
    kubeconfig,
    server,
    kubectl,
    nodeKubeconfig(node: string) {
      const out = path.join(dir, `node-${node}.kubeconfig`);
      const r = spawnSync(bin, ["node-kubeconfig", "--dir", dir, "--name", node, "--out", out], {
        encoding: "utf8",
      });
      if (r.status !== 0) throw new Error(`node-kubeconfig failed: ${r.stderr}`);
      return out;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        await new Promise<void>((resolve) => {
          child.once("exit", () => resolve());
          child.kill("SIGTERM");
          setTimeout(() => child.kill("SIGKILL"), 20_000).unref();
        });
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
