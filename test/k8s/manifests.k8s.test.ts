import { expect } from "chai";
import path from "node:path";
import { startK8sLite, type K8sLite } from "@fizz/testkit";

const K8S_DIR = path.resolve(import.meta.dirname, "../../k8s");

/** The manifests a user applies are checked by a real kube-apiserver, not by a linter. */
describe("k8s/ manifests against a real kube-apiserver", function () {
  let k: K8sLite;
  before(async () => {
    k = await startK8sLite();
  });
  after(async () => {
    await k?.stop();
  });

  it("are accepted by a server-side dry run", () => {
    // The namespace must exist for namespaced objects to dry-run; create it for real first.
    const ns = k.kubectl("apply", "-f", path.join(K8S_DIR, "namespace.yaml"));
    expect(ns.status, ns.stderr).to.equal(0);
    const r = k.kubectl("apply", "--dry-run=server", "-k", K8S_DIR);
    expect(r.status, r.stderr).to.equal(0);
    for (const obj of [
      "deployment.apps/gateway",
      "deployment.apps/registry",
      "deployment.apps/scheduler",
      "deployment.apps/poolkeeper",
      "deployment.apps/kubewatcher",
      "statefulset.apps/nats",
      "statefulset.apps/redis",
      "service/gateway",
      "role.rbac.authorization.k8s.io/fizz-poolkeeper",
    ]) {
      expect(r.stdout).to.include(`${obj} created (server dry run)`);
    }
  });

  it("grant the poolkeeper pods, and get (only) on Secrets and ConfigMaps, in its own namespace", () => {
    const as = ["--as", "system:serviceaccount:fizz:fizz-poolkeeper"];
    k.kubectl("apply", "-f", path.join(K8S_DIR, "rbac.yaml"));
    const can = (...args: string[]) => k.kubectl("auth", "can-i", ...args, ...as).stdout.trim();
    expect(can("create", "pods", "-n", "fizz")).to.equal("yes");
    expect(can("watch", "pods", "-n", "fizz")).to.equal("yes");
    expect(can("create", "pods", "-n", "default")).to.equal("no");
    // Function secrets: it reads one by name at specialization, never lists or changes them.
    expect(can("get", "secrets", "-n", "fizz")).to.equal("yes");
    expect(can("list", "secrets", "-n", "fizz")).to.equal("no");
    expect(can("update", "secrets", "-n", "fizz")).to.equal("no");
    expect(can("get", "secrets", "-n", "default")).to.equal("no");
    expect(can("get", "configmaps", "-n", "fizz")).to.equal("yes");
    expect(can("create", "deployments", "-n", "fizz")).to.equal("no");
  });

  it("give the kubewatcher read-only access", () => {
    const as = ["--as", "system:serviceaccount:fizz:fizz-kubewatcher"];
    const can = (...args: string[]) => k.kubectl("auth", "can-i", ...args, ...as).stdout.trim();
    expect(can("watch", "configmaps", "-n", "default")).to.equal("yes");
    expect(can("create", "configmaps", "-n", "default")).to.equal("no");
    expect(can("delete", "pods", "-n", "fizz")).to.equal("no");
  });
});
