import { expect } from "chai";
import { KubeClient, NOT_CONFIGURED, type KubeApiError } from "../src/kube-client";
import { kubeConfigAvailable, loadClusterConfig } from "../src/kube-config-source";

const none = { kubeconfig: undefined, inCluster: false };
const noFiles = () => false;

describe("kubewatcher: finding a cluster without loading client-node", () => {
  it("reports nothing to load when no kubeconfig, no $KUBECONFIG, no ~/.kube/config and no service account exist", () => {
    expect(kubeConfigAvailable(none, { HOME: "/home/u" }, noFiles)).to.equal(false);
  });

  it("reports a cluster for FIZZ_KUBECONFIG, in-cluster, $KUBECONFIG, ~/.kube/config or a service-account token", () => {
    expect(kubeConfigAvailable({ ...none, kubeconfig: "/k" }, {}, noFiles)).to.equal(true);
    expect(kubeConfigAvailable({ ...none, inCluster: true }, {}, noFiles)).to.equal(true);
    expect(kubeConfigAvailable(none, { KUBECONFIG: "/a:/b" }, noFiles)).to.equal(true);
    expect(
      kubeConfigAvailable(none, { HOME: "/home/u" }, (f) => f === "/home/u/.kube/config"),
    ).to.equal(true);
    expect(kubeConfigAvailable(none, {}, (f) => f.endsWith("/serviceaccount/token"))).to.equal(
      true,
    );
  });

  it("loads the named kubeconfig and fails with the file named when it cannot", async () => {
    const err = await loadClusterConfig({
      ...(await import("../src/config")).loadConfig({}),
      kubeconfig: "/nonexistent/kubeconfig",
    }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).to.match(/FIZZ_KUBECONFIG: cannot load \/nonexistent\/kubeconfig/);
  });

  it("a client without a config is not configured and refuses calls as NotConfigured", async () => {
    const client = new KubeClient(undefined);
    expect(client.configured).to.equal(false);
    const err = (await client.get("/version").catch((e: unknown) => e)) as KubeApiError;
    expect(err.reason).to.equal(NOT_CONFIGURED);
  });
});
