import { expect } from "chai";
import { KubeHarness, bodyOf, header, seen, watchTrigger } from "./harness";

/**
 * 410 Gone, for real: the kube-apiserver's watch cache keeps recent events only (it evicts events
 * older than 75 s once it is full), so a kubewatcher that was down long enough, while enough
 * happened, finds its resume point expired. It must then relist and deliver exactly the
 * differences with what it had delivered. Slow by nature (~80 s of waiting).
 */
describe("kubewatcher after 410 Gone (k8s-lite + nats-server)", function () {
  this.timeout(180_000);
  const h = new KubeHarness();

  before(() => h.setUp());
  after(() => h.tearDown());

  it("relists and delivers only the differences: changed MODIFIED, vanished DELETED, new ADDED", async () => {
    await h.namespace("g-gone");
    await h.changed(
      "created",
      watchTrigger("g-gone", "resync", { resource: "configmaps", labels: "g=1" }),
    );
    let kw = await h.startKubewatcher();
    await h.waitWatching(kw, "g-gone/resync");
    for (const name of ["keep", "change", "drop"])
      await h.createConfigMap("g-gone", name, { g: "1" });
    await h.createConfigMap("g-gone", "noise");
    await h.waitFor("resync", 3);
    await h.stopKubewatcher(kw);

    await h.updateConfigMap("g-gone", "change", { v: "2" });
    await h.updateConfigMap("g-gone", "change", { v: "3" });
    await h.deleteConfigMap("g-gone", "drop");
    await h.createConfigMap("g-gone", "fresh", { g: "1" });
    // Let those events age past the watch cache's freshness window, then push them out of it.
    await new Promise((r) => setTimeout(r, 77_000));
    for (let i = 0; i < 150; i++) await h.updateConfigMap("g-gone", "noise", { i: String(i) });

    kw = await h.startKubewatcher();
    await h.waitFor("resync", 6);
    await new Promise((r) => setTimeout(r, 500));
    const invs = h.of("resync");
    expect(seen(invs)).to.deep.equal([
      "ADDED keep",
      "ADDED change",
      "ADDED drop",
      "DELETED drop",
      "MODIFIED change",
      "ADDED fresh",
    ]);
    const metrics = await (await fetch(`http://127.0.0.1:${kw.opsPort}/metrics`)).text();
    expect(metrics).to.match(/^fizz_kubewatcher_resyncs_total(\{[^}]*\})? 1$/m);

    const deleted = invs[3]!;
    expect(header(deleted, "X-Kubernetes-Namespace")).to.equal("g-gone");
    const body = bodyOf(deleted);
    expect(body).to.include({ apiVersion: "v1", kind: "ConfigMap" });
    expect(body.metadata).to.deep.include({
      name: "drop",
      namespace: "g-gone",
      labels: { g: "1" },
    });
    expect(body.metadata.uid).to.equal(bodyOf(invs[2]!).metadata.uid);
    expect(bodyOf(invs[4]!).data).to.deep.equal({ v: "3" });

    // And the watch goes on from the relist.
    await h.deleteConfigMap("g-gone", "keep");
    await h.waitFor("resync", 7);
    expect(seen(h.of("resync")).at(-1)).to.equal("DELETED keep");
  });
});
