import { FizzError } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { KubeConfig } from "@kubernetes/client-node";
import { expect } from "chai";
import { PodApi } from "../src/kube-api";
import { CONFIG_NAMESPACE_LABEL, kubeConfigResolver } from "../src/kube-function-config";
import { KubeHarness, NS } from "./kube-harness";

/**
 * A function's Secrets and ConfigMaps read from a real kube-apiserver (k8s-lite) as the
 * fizz-poolkeeper service account of k8s/rbac.yaml: what the Role allows, and what the label
 * check keeps from functions.
 */
describe("function secrets and configmaps from the Kubernetes API (k8s-lite)", function () {
  this.timeout(180_000);
  const h = new KubeHarness();
  let resolve: ReturnType<typeof kubeConfigResolver>;
  const secretValue = Buffer.from("s3cret").toString("base64");

  before(async () => {
    await h.setUpAll();
    const kc = new KubeConfig();
    kc.loadFromFile(h.saKubeconfig);
    resolve = kubeConfigResolver(new PodApi(kc, NS, silentLogger()));
    const labels = { [CONFIG_NAMESPACE_LABEL]: "default" };
    await h.core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: "db", labels }, data: { password: secretValue } },
    });
    await h.core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: "platform-like" }, data: { token: secretValue } },
    });
    await h.core.createNamespacedConfigMap({
      namespace: NS,
      body: { metadata: { name: "settings", labels }, data: { mode: "fast" } },
    });
  });
  after(() => h.tearDownAll());

  async function failure(p: Promise<unknown>): Promise<FizzError> {
    try {
      await p;
    } catch (err) {
      expect(err).to.be.instanceOf(FizzError);
      return err as FizzError;
    }
    throw new Error("expected a failure");
  }

  it("reads a labelled Secret and ConfigMap as the poolkeeper's service account", async () => {
    expect(await resolve("default", ["db"], ["settings"])).to.deep.equal({
      secrets: { db: { password: secretValue } },
      configmaps: { settings: { mode: Buffer.from("fast").toString("base64") } },
    });
  });

  it("answers MISSING_CONFIG for an unlabelled Secret (as the platform's own are) and for one of another namespace", async () => {
    const unlabelled = await failure(resolve("default", ["platform-like"], []));
    expect(unlabelled.code).to.equal("MISSING_CONFIG");
    expect(unlabelled.message).to.not.include(secretValue);
    const other = await failure(resolve("team-b", ["db"], []));
    expect(other.code).to.equal("MISSING_CONFIG");
    expect(other.message).to.include("secret team-b/db");
  });

  it("gives the service account get on Secrets and ConfigMaps in its namespace, and no list, watch or other namespace", () => {
    const can = (...args: string[]) =>
      h.k
        .kubectl("auth", "can-i", "--as", `system:serviceaccount:${NS}:fizz-poolkeeper`, ...args)
        .stdout.trim();
    expect(can("get", "secrets", "-n", NS)).to.equal("yes");
    expect(can("get", "configmaps", "-n", NS)).to.equal("yes");
    for (const verb of ["list", "watch", "create", "update", "delete"])
      expect(can(verb, "secrets", "-n", NS), `${verb} secrets`).to.equal("no");
    expect(can("get", "secrets", "-n", "kube-system")).to.equal("no");
    expect(can("get", "secrets", "-n", "default")).to.equal("no");
  });
});
