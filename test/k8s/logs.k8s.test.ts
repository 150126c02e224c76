import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import path from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { fizzCli, NS, podLogs, startKubePlatform, type KubePlatform } from "./kube-platform";

/**
 * Issue 14 on the kubernetes backend: a function pod's stdout and stderr, written by procnode as
 * CRI logs and served by its kubelet endpoint, are followed by the poolkeeper through the API
 * server (pods/log) and published on the bus, tagged like the process backend's lines; `kubectl
 * logs` works through the same endpoint, which only the API server's kubelet client may call.
 */
interface Line {
  namespace: string;
  function: string;
  instanceId: string;
  stream: string;
  line: string;
  requestId?: string;
}

const PRINTER = `
module.exports = async () => {
  console.log("k8s printer says hello");
  console.error("k8s printer warns");
  return { status: 200, body: "ok" };
};
`;

const CRASHER = `
module.exports = async () => {
  console.log("crasher going down");
  console.error("crasher last words");
  setTimeout(() => process.exit(7), 20);
  return { status: 200, body: "bye" };
};
`;

describe("function logs on the kubernetes backend (k8s-lite + procnode)", function () {
  this.timeout(600_000);
  let kp: KubePlatform | undefined;
  let work: string;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "fizz-k8s-logs-"));
    await writeFile(path.join(work, "printer.js"), PRINTER);
    await writeFile(path.join(work, "crasher.js"), CRASHER);
    kp = await startKubePlatform(work);
    await cli("env", "create", "--name", "node", "--image", "fizz/env-node", "--poolsize", "1");
  });
  after(async () => {
    await kp?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });
  afterEach(function () {
    if (this.currentTest?.state !== "failed" || !kp) return;
    console.error(kp.platform.logs.slice(-80).join("\n"));
    console.error(podLogs(kp.node));
  });

  async function cli(...args: string[]): Promise<string> {
    const r = await fizzCli(kp!.platform, args, { cwd: work });
    if (r.code !== 0) throw new Error(`fizz ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  }

  async function call(fn: string, requestId: string): Promise<number> {
    const res = await fetch(`${kp!.platform.gatewayUrl}/function/${fn}`, {
      headers: { "x-request-id": requestId },
      signal: AbortSignal.timeout(120_000),
    });
    await res.text();
    return res.status;
  }

  /** `fizz fn logs -o json`: the lines the registry reads back from FIZZ_LOGS. */
  async function busLines(fn: string): Promise<Line[]> {
    return (await cli("fn", "logs", "--name", fn, "-o", "json"))
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as Line);
  }

  function lineOf(lines: Line[], text: string): Line | undefined {
    return lines.find((l) => l.line === text);
  }

  it("publishes a pod's stdout and stderr lines, tagged with namespace, function, instance, stream and request id", async () => {
    await cli("fn", "create", "--name", "printer", "--env", "node", "--code", "printer.js");
    expect(await call("printer", "k8s-req-1")).to.equal(200);
    const lines = await waitFor(
      async () => {
        const l = await busLines("printer");
        return lineOf(l, "k8s printer says hello") && lineOf(l, "k8s printer warns")
          ? l
          : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500, what: "both printer lines on FIZZ_LOGS" },
    );
    const out = lineOf(lines, "k8s printer says hello")!;
    const err = lineOf(lines, "k8s printer warns")!;
    expect(out).to.include({
      namespace: "default",
      function: "printer",
      stream: "stdout",
      requestId: "k8s-req-1",
    });
    expect(err).to.include({ stream: "stderr", requestId: "k8s-req-1" });
    // The instance is the pod: its id is the pod's name in the poolkeeper's namespace.
    const pod = await kp!.core.readNamespacedPod({ name: out.instanceId, namespace: NS });
    expect(pod.metadata?.labels?.["fizz.dev/managed-by"]).to.equal("poolkeeper");
    expect(err.instanceId).to.equal(out.instanceId);
    // Each line once, although the follow reads two streams.
    expect(lines.filter((l) => l.line === "k8s printer says hello")).to.have.length(1);

    // kubectl logs: the API server reads the same lines from procnode's kubelet endpoint.
    const all = await kp!.core.readNamespacedPodLog({
      name: out.instanceId,
      namespace: NS,
      container: "runtime",
    });
    expect(all).to.include("k8s printer says hello\n").and.include("k8s printer warns\n");
    const stderr = await kp!.core.readNamespacedPodLog({
      name: out.instanceId,
      namespace: NS,
      container: "runtime",
      stream: "Stderr",
    });
    expect(stderr).to.include("k8s printer warns").and.not.include("k8s printer says hello");
    // (Not kubectl: k.kubectl is spawnSync, which would block this process, where procnode runs.)
    const tail = await kp!.core.readNamespacedPodLog({
      name: out.instanceId,
      namespace: NS,
      container: "runtime",
      tailLines: 1,
    });
    expect(tail.trimEnd().split("\n")).to.have.length(1);
  });

  it("captures a crashing function's last lines before the pool hears it died", async () => {
    await cli("fn", "create", "--name", "crasher", "--env", "node", "--code", "crasher.js");
    await call("crasher", "k8s-req-crash");
    const lines = await waitFor(
      async () => {
        const l = await busLines("crasher");
        return lineOf(l, "crasher last words") ? l : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500, what: "the crasher's last line on FIZZ_LOGS" },
    );
    expect(lineOf(lines, "crasher going down")).to.include({ stream: "stdout" });
    expect(lineOf(lines, "crasher last words")).to.include({
      stream: "stderr",
      function: "crasher",
    });
  });

  it("lets only the API server's kubelet client read procnode's log endpoint", async () => {
    const k = kp!.k;
    const pod = (await kp!.core.listNamespacedPod({ namespace: NS })).items.find(
      (p) => p.status?.phase === "Running" && p.metadata?.labels?.["fizz.dev/managed-by"],
    );
    const logPath = `/containerLogs/${NS}/${pod!.metadata!.name}/runtime`;
    const port = kp!.node.kubeletPort;
    const file = (n: string) => readFileSync(path.join(k.dir, n), "utf8");

    // The API server's own client certificate (O=system:masters, signed by the cluster CA).
    const ok = await kubeletGet(port, logPath, {
      cert: file("apiserver-kubelet-client.crt"),
      key: file("apiserver-kubelet-client.key"),
    });
    expect(ok.status).to.equal(200);
    // No client certificate: the handshake is refused.
    expect((await kubeletGet(port, logPath, {})).error).to.be.a("string");
    // A system:masters certificate of another CA (a second k8s-lite's): refused too.
    const other = await mkdtemp(path.join(tmpdir(), "fizz-other-ca-"));
    try {
      const made = spawnSync(k.bin, ["certs", "--dir", other], { encoding: "utf8" });
      expect(made.status, made.stderr).to.equal(0);
      const forged = await kubeletGet(port, logPath, {
        cert: readFileSync(path.join(other, "apiserver-kubelet-client.crt"), "utf8"),
        key: readFileSync(path.join(other, "apiserver-kubelet-client.key"), "utf8"),
      });
      expect(forged.error).to.be.a("string");
      expect(forged.status).to.equal(undefined);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
    // The cluster CA's certificate of another node: authenticated, but not allowed nodes/proxy.
    const kc = new KubeConfig();
    kc.loadFromFile(k.nodeKubeconfig("intruder"));
    const user = kc.getCurrentUser()!;
    const intruder = await kubeletGet(port, logPath, {
      cert: Buffer.from(user.certData!, "base64").toString(),
      key: Buffer.from(user.keyData!, "base64").toString(),
    });
    expect(intruder.status).to.equal(403);
    expect(intruder.body).to.include("system:node:intruder").and.not.include("k8s printer");
  });

  it("grants the poolkeeper pods/log in its own namespace only", () => {
    const can = (ns: string) =>
      kp!.k
        .kubectl(
          "auth",
          "can-i",
          "get",
          "pods",
          "--subresource=log",
          "-n",
          ns,
          "--as",
          `system:serviceaccount:${NS}:fizz-poolkeeper`,
        )
        .stdout.trim();
    expect(can(NS)).to.equal("yes");
    expect(can("default")).to.equal("no");
  });
});

/** GET on procnode's kubelet endpoint with a client certificate (or none). */
function kubeletGet(
  port: number,
  p: string,
  tls: { cert?: string; key?: string },
): Promise<{ status: number | undefined; body: string; error?: string }> {
  return new Promise((resolve) => {
    const req = request(
      // The serving certificate is self-signed: the API server does not verify it either.
      { host: "127.0.0.1", port, path: p, rejectUnauthorized: false, ...tls },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode, body }));
      },
    );
    req.on("error", (err) => resolve({ status: undefined, body: "", error: err.message }));
    req.end();
  });
}
