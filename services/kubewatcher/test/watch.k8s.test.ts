import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import type { Kubewatcher } from "../src/index";
import { applyWidgetCrd, writeTemp } from "./crd";
import { KubeHarness, bodyOf, header, seen, watchTrigger } from "./harness";

/**
 * Watch triggers against a real kube-apiserver (k8s-lite) and a real nats-server: what a trigger
 * delivers, what it filters out, triggers changing at runtime, and refusals. Restarts, failover
 * and 410 Gone have their own suites.
 */
describe("kubewatcher watch triggers (k8s-lite + nats-server)", function () {
  this.timeout(120_000);
  const h = new KubeHarness();
  let kw: Kubewatcher;

  before(async () => {
    await h.setUp();
    kw = await h.startKubewatcher({ FIZZ_KUBEWATCHER_RESOLVE_RETRY_MS: "300" });
    await waitFor(() => kw.isLeader(), { timeoutMs: 10_000, what: "leader" });
  });
  after(() => h.tearDown());

  it("delivers create, modify and delete of a labelled ConfigMap as three invocations in order, with Fission's headers", async () => {
    await h.namespace("t-crud");
    const t = watchTrigger("t-crud", "cm-watch", { resource: "configmaps", labels: "app=web" });
    await h.changed("created", t);
    await h.waitWatching(kw, "t-crud/cm-watch");

    const created = await h.createConfigMap(
      "t-crud",
      "settings",
      { app: "web" },
      { color: "blue" },
    );
    const updated = await h.updateConfigMap("t-crud", "settings", { color: "green" });
    await h.deleteConfigMap("t-crud", "settings");

    const invs = await h.waitFor("cm-watch", 3);
    expect(seen(invs)).to.deep.equal(["ADDED settings", "MODIFIED settings", "DELETED settings"]);
    const uid = created.metadata!.uid!;
    for (const inv of invs) {
      expect(inv).to.include({
        namespace: "t-crud",
        function: "handler",
        source: "watch",
        method: "POST",
        path: "/",
      });
      expect(header(inv, "X-Kubernetes-Object-Type")).to.equal("ConfigMap");
      expect(header(inv, "X-Kubernetes-Group")).to.equal("");
      expect(header(inv, "X-Kubernetes-Version")).to.equal("v1");
      expect(header(inv, "X-Kubernetes-Resource")).to.equal("configmaps");
      expect(header(inv, "X-Kubernetes-Namespace")).to.equal("t-crud");
      expect(header(inv, "X-Kubernetes-Name")).to.equal("settings");
      expect(header(inv, "content-type")).to.equal("application/json");
      const body = bodyOf(inv);
      expect(body).to.include({ apiVersion: "v1", kind: "ConfigMap" });
      expect(body.metadata).to.include({ name: "settings", namespace: "t-crud", uid });
      expect(inv.callId).to.equal(
        `watch:t-crud:cm-watch:${uid}:${body.metadata.resourceVersion}:${header(inv, "X-Kubernetes-Event-Type")}`,
      );
    }
    expect(bodyOf(invs[0]!).data).to.deep.equal({ color: "blue" });
    expect(bodyOf(invs[1]!).data).to.deep.equal({ color: "green" });
    expect(bodyOf(invs[1]!).metadata.resourceVersion).to.equal(updated.metadata!.resourceVersion);
  });

  it("ignores ConfigMaps the label selector does not match (the apiserver filters them)", async () => {
    await h.namespace("t-labels");
    const t = watchTrigger("t-labels", "labelled", { resource: "configmaps", labels: "app=web" });
    await h.changed("created", t);
    await h.waitWatching(kw, "t-labels/labelled");
    await h.createConfigMap("t-labels", "plain");
    await h.createConfigMap("t-labels", "other-app", { app: "db" });
    await h.updateConfigMap("t-labels", "plain", { x: "1" });
    await h.createConfigMap("t-labels", "marker", { app: "web" });
    // Events arrive in order: had the others been delivered, they would precede the marker.
    const invs = await h.waitFor("labelled", 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(seen(h.of("labelled"))).to.deep.equal(["ADDED marker"]);
    expect(invs).to.have.length(1);
  });

  it("delivers only the event types the trigger asks for, and applies field selectors", async () => {
    await h.namespace("t-events");
    await h.changed(
      "created",
      watchTrigger("t-events", "deletions", {
        resource: "configmaps",
        events: ["DELETED"],
        labels: "k=v",
      }),
    );
    await h.changed(
      "created",
      watchTrigger("t-events", "by-name", {
        resource: "configmaps",
        fields: "metadata.name=chosen",
      }),
    );
    await h.waitWatching(kw, "t-events/deletions");
    await h.waitWatching(kw, "t-events/by-name");
    await h.createConfigMap("t-events", "chosen", { k: "v" });
    await h.createConfigMap("t-events", "not-chosen", { k: "v" });
    await h.deleteConfigMap("t-events", "not-chosen");
    await h.deleteConfigMap("t-events", "chosen");
    await h.waitFor("deletions", 2);
    await h.waitFor("by-name", 2);
    expect(seen(h.of("deletions"))).to.deep.equal(["DELETED not-chosen", "DELETED chosen"]);
    expect(seen(h.of("by-name"))).to.deep.equal(["ADDED chosen", "DELETED chosen"]);
  });

  it("shares one informer between triggers with the same key and gives each its own invocation", async () => {
    await h.namespace("t-shared");
    const before = (await metric(kw, "fizz_kubewatcher_informers")) ?? 0;
    for (const name of ["first", "second"]) {
      await h.changed(
        "created",
        watchTrigger("t-shared", name, { resource: "configmaps", labels: "s=1" }),
      );
    }
    await h.waitWatching(kw, "t-shared/first");
    await h.waitWatching(kw, "t-shared/second");
    expect(await metric(kw, "fizz_kubewatcher_informers")).to.equal(before + 1);
    await h.createConfigMap("t-shared", "one", { s: "1" });
    const [a] = await h.waitFor("first", 1);
    const [b] = await h.waitFor("second", 1);
    expect(a!.callId).to.match(/^watch:t-shared:first:/);
    expect(b!.callId).to.match(/^watch:t-shared:second:/);
  });

  it("stops delivering once its trigger is deleted, and starts a trigger added at runtime", async () => {
    await h.namespace("t-runtime");
    const t = watchTrigger("t-runtime", "short-lived", { resource: "configmaps" });
    await h.changed("created", t);
    await h.waitWatching(kw, "t-runtime/short-lived");
    await h.createConfigMap("t-runtime", "before");
    await h.waitFor("short-lived", 1);

    await h.changed("deleted", t);
    await waitFor(() => kw.status()["t-runtime/short-lived"] === undefined, {
      what: "trigger gone",
    });
    const keeper = watchTrigger("t-runtime", "keeper", { resource: "services" });
    await h.changed("created", keeper);
    await h.waitWatching(kw, "t-runtime/keeper");
    await h.createConfigMap("t-runtime", "after");
    await h.core.createNamespacedService({
      namespace: "t-runtime",
      body: { metadata: { name: "web" }, spec: { ports: [{ port: 80 }] } },
    });
    const [svc] = await h.waitFor("keeper", 1);
    expect(header(svc!, "X-Kubernetes-Object-Type")).to.equal("Service");
    await new Promise((r) => setTimeout(r, 300));
    expect(seen(h.of("short-lived"))).to.deep.equal(["ADDED before"]);
  });

  it("refuses a trigger watching another namespace without FIZZ_WATCH_CLUSTER_SCOPE, and keeps going", async () => {
    await h.namespace("t-tenant-a");
    await h.namespace("t-tenant-b");
    await h.changed(
      "created",
      watchTrigger("t-tenant-a", "spy", { resource: "configmaps", namespace: "t-tenant-b" }),
    );
    await h.changed("created", watchTrigger("t-tenant-b", "own", { resource: "configmaps" }));
    await waitFor(() => kw.status()["t-tenant-a/spy"]?.state === "refused", { what: "refused" });
    expect(kw.status()["t-tenant-a/spy"]?.reason).to.match(/FIZZ_WATCH_CLUSTER_SCOPE/);
    await h.waitWatching(kw, "t-tenant-b/own");
    await h.createConfigMap("t-tenant-b", "secret-plans");
    await h.waitFor("own", 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(h.of("spy")).to.deep.equal([]);
  });

  it("marks a trigger on an unknown resource failed without crashing, and starts it once the CRD exists", async () => {
    await h.namespace("t-crd");
    const t = watchTrigger("t-crd", "widgets", { resource: "widgets.example.com" });
    await h.changed("created", t);
    await waitFor(() => kw.status()["t-crd/widgets"]?.state === "failed", { what: "failed" });
    expect(kw.status()["t-crd/widgets"]?.reason).to.match(/widgets\.example\.com.*not served/);
    expect(kw.isLeader(), "still running").to.equal(true);

    applyWidgetCrd(h);
    await h.waitWatching(kw, "t-crd/widgets", 30_000);
    const r = h.k.kubectl(
      "create",
      "-f",
      writeTemp(h, "gizmo.json", {
        apiVersion: "example.com/v1",
        kind: "Widget",
        metadata: { name: "gizmo", namespace: "t-crd" },
        spec: { size: 3 },
      }),
    );
    expect(r.status, r.stderr).to.equal(0);
    const [inv] = await h.waitFor("widgets", 1);
    expect(header(inv!, "X-Kubernetes-Object-Type")).to.equal("Widget");
    expect(header(inv!, "X-Kubernetes-Group")).to.equal("example.com");
    expect(header(inv!, "X-Kubernetes-Resource")).to.equal("widgets");
    expect(bodyOf(inv!)).to.include({ apiVersion: "example.com/v1", kind: "Widget" });
  });

  it("marks a trigger with a selector the apiserver rejects failed, and recovers when the trigger is updated", async () => {
    await h.namespace("t-update");
    const bad = watchTrigger("t-update", "fixme", { resource: "configmaps", labels: "app in (" });
    await h.changed("created", bad);
    await waitFor(() => kw.status()["t-update/fixme"]?.state === "failed", { what: "failed" });
    expect(kw.status()["t-update/fixme"]?.reason).to.match(/400/);
    const good = {
      ...bad,
      metadata: { ...bad.metadata, revision: 2 },
      spec: { ...bad.spec, labels: "app=ok" },
    };
    await h.changed("updated", good);
    await h.waitWatching(kw, "t-update/fixme");
    await h.createConfigMap("t-update", "fixed", { app: "ok" });
    expect(seen(await h.waitFor("fixme", 1))).to.deep.equal(["ADDED fixed"]);
  });

  it("refuses a cluster-scoped resource without FIZZ_WATCH_CLUSTER_SCOPE", async () => {
    await h.namespace("t-cluster");
    await h.changed(
      "created",
      watchTrigger("t-cluster", "all-namespaces", { resource: "namespaces" }),
    );
    await waitFor(() => kw.status()["t-cluster/all-namespaces"]?.state === "refused", {
      what: "refused",
    });
    expect(kw.status()["t-cluster/all-namespaces"]?.reason).to.match(/cluster-scoped/);
    const ready = await fetch(`http://127.0.0.1:${kw.opsPort}/readyz`);
    expect(ready.status).to.equal(200);
    expect(await ready.json()).to.deep.include({ checks: { nats: true, kubernetes: true } });
  });

  it("with FIZZ_WATCH_CLUSTER_SCOPE=true watches other namespaces and cluster-scoped resources", async () => {
    await h.namespace("t-scope-a");
    await h.namespace("t-scope-b");
    await h.changed(
      "created",
      watchTrigger("t-scope-a", "cross", { resource: "configmaps", namespace: "t-scope-b" }),
    );
    // Its own bucket, so it leads alongside the replica above (which refuses these triggers).
    const wide = await h.startKubewatcher({
      FIZZ_WATCH_CLUSTER_SCOPE: "true",
      FIZZ_KUBEWATCHER_BUCKET: "kw_wide",
    });
    try {
      await h.waitWatching(wide, "t-scope-a/cross");
      await h.waitWatching(wide, "t-cluster/all-namespaces");
      expect(kw.status()["t-scope-a/cross"]?.state).to.equal("refused");
      await h.createConfigMap("t-scope-b", "shared");
      await h.namespace("t-scope-c");
      const [inv] = await h.waitFor("cross", 1);
      expect(inv!.namespace).to.equal("t-scope-a");
      expect(header(inv!, "X-Kubernetes-Namespace")).to.equal("t-scope-b");
      const ns = await h.waitFor("all-namespaces", 1);
      expect(seen(ns)).to.include("ADDED t-scope-c");
      expect(header(ns[0]!, "X-Kubernetes-Namespace")).to.equal("");
    } finally {
      await h.stopKubewatcher(wide);
    }
  });
});

async function metric(kw: Kubewatcher, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${kw.opsPort}/metrics`)).text();
  const m = new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, "m").exec(text);
  return m ? Number(m[2]) : undefined;
}
