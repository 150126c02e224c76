import { subjects, Codecs } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import type { JetStreamClient } from "@nats-io/jetstream";
import { expect } from "chai";
import { loadConfig } from "../src/config";
import { callIdOf, invocationOf, Publisher, type KubeEvent } from "../src/delivery";
import {
  Discovery,
  UnknownResourceError,
  collectionPath,
  type ResolvedResource,
} from "../src/discovery";
import type { KubeClient } from "../src/kube-client";
import { keyIdOf, keyOf } from "../src/watch-key";
import { watchTrigger } from "./fixtures";

const CONFIGMAPS: ResolvedResource = {
  group: "",
  version: "v1",
  plural: "configmaps",
  kind: "ConfigMap",
  namespaced: true,
  apiVersion: "v1",
};

function event(type: KubeEvent["type"], data: Record<string, string> = {}): KubeEvent {
  return {
    type,
    resource: CONFIGMAPS,
    object: {
      metadata: { name: "cm", namespace: "default", uid: "u-1", resourceVersion: "42" },
      data,
    },
  };
}

describe("kubewatcher config", () => {
  it("defaults to own-namespace watches, a 15 s leader lock and the fizz_kubewatcher bucket", () => {
    const c = loadConfig({});
    expect(c).to.include({
      clusterScope: false,
      leaderTtlMs: 15_000,
      bucket: "fizz_kubewatcher",
      kubeconfig: undefined,
      inCluster: false,
    });
    expect(
      loadConfig({ KUBERNETES_SERVICE_HOST: "10.0.0.1", FIZZ_WATCH_CLUSTER_SCOPE: "true" }),
    ).to.include({
      inCluster: true,
      clusterScope: true,
    });
  });

  it("refuses bad settings, naming the variable", () => {
    expect(() => loadConfig({ FIZZ_KUBEWATCHER_LEADER_TTL_MS: "10" })).to.throw(
      /FIZZ_KUBEWATCHER_LEADER_TTL_MS/,
    );
    expect(() => loadConfig({ FIZZ_WATCH_CLUSTER_SCOPE: "maybe" })).to.throw(
      /FIZZ_WATCH_CLUSTER_SCOPE/,
    );
    expect(() => loadConfig({ FIZZ_KUBEWATCHER_BUCKET: "a.b" })).to.throw(
      /FIZZ_KUBEWATCHER_BUCKET/,
    );
  });
});

describe("kubewatcher invocations", () => {
  const t = watchTrigger("default", "cm-watch", { resource: "configmaps" });

  it("derive the call id from trigger, uid, resourceVersion and event type, so a re-publish is a duplicate", () => {
    expect(callIdOf(t, event("MODIFIED"))).to.equal("watch:default:cm-watch:u-1:42:MODIFIED");
    expect(callIdOf(t, event("DELETED"))).to.not.equal(callIdOf(t, event("MODIFIED")));
    const long = watchTrigger("n".repeat(63), "t".repeat(63), { resource: "configmaps" });
    const other = watchTrigger("n".repeat(63), `${"t".repeat(62)}u`, { resource: "configmaps" });
    const id = callIdOf(long, event("ADDED"));
    expect(id.length).to.be.at.most(128);
    expect(id).to.equal(callIdOf(long, event("ADDED")));
    expect(id).to.not.equal(callIdOf(other, event("ADDED")));
  });

  it("carry Fission's headers and the whole object, with apiVersion and kind filled in for listed objects", () => {
    const inv = invocationOf(t, event("ADDED", { a: "1" }), 1);
    expect(inv).to.include({
      source: "watch",
      method: "POST",
      path: "/",
      function: "handler",
      trigger: "cm-watch",
    });
    expect(inv.headers).to.deep.equal({
      "content-type": "application/json",
      "X-Kubernetes-Event-Type": "ADDED",
      "X-Kubernetes-Object-Type": "ConfigMap",
      "X-Kubernetes-Group": "",
      "X-Kubernetes-Version": "v1",
      "X-Kubernetes-Resource": "configmaps",
      "X-Kubernetes-Namespace": "default",
      "X-Kubernetes-Name": "cm",
    });
    const body = JSON.parse(Buffer.from(inv.body, "base64").toString()) as Record<string, unknown>;
    expect(body).to.deep.include({ apiVersion: "v1", kind: "ConfigMap", data: { a: "1" } });
  });

  it("are published until JetStream acknowledges, and an object too large for a message travels as its identity", async () => {
    const sent: Array<{ subject: string; data: Uint8Array; msgID: string | undefined }> = [];
    let failures = 1;
    let retries = 0;
    const js = {
      publish: (subject: string, data: Uint8Array, opts?: { msgID?: string }) => {
        if (failures-- > 0) return Promise.reject(new Error("503 no responders"));
        sent.push({ subject, data, msgID: opts?.msgID });
        return Promise.resolve({ seq: sent.length });
      },
    } as unknown as JetStreamClient;
    const publisher = new Publisher({
      js: () => js,
      subjects: subjects(),
      sender: "test",
      logger: silentLogger(),
      maxPayload: () => 8 * 1024,
      onPublished: () => undefined,
      onRetry: () => retries++,
    });
    await publisher.publish(
      t,
      event("ADDED", { big: "x".repeat(20_000) }),
      new AbortController().signal,
    );
    expect(retries).to.equal(1);
    expect(sent).to.have.length(1);
    expect(sent[0]!.subject).to.equal("fizz.v1.invoke.default.handler");
    expect(sent[0]!.msgID).to.equal("watch:default:cm-watch:u-1:42:ADDED");
    const inv = Codecs.invoke.decode(sent[0]!.data).data;
    expect(inv.headers["X-Kubernetes-Object-Truncated"]).to.equal("true");
    expect(JSON.parse(Buffer.from(inv.body, "base64").toString())).to.deep.equal({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "cm", namespace: "default", uid: "u-1", resourceVersion: "42" },
    });
  });
});

describe("kubewatcher informer keys", () => {
  it("are equal for triggers watching the same resource, namespace and selectors", () => {
    const a = watchTrigger("default", "a", { resource: "pods", labels: "app=web" });
    const b = watchTrigger("default", "b", {
      resource: "pods",
      labels: " app=web ",
      function: "other",
    });
    const c = watchTrigger("default", "c", { resource: "pods", labels: "app=db" });
    expect(keyIdOf(keyOf(a.spec))).to.equal(keyIdOf(keyOf(b.spec)));
    expect(keyIdOf(keyOf(a.spec))).to.not.equal(keyIdOf(keyOf(c.spec)));
    expect(keyIdOf(keyOf(a.spec))).to.match(/^[0-9a-f]{24}$/);
  });
});

describe("kubewatcher discovery", () => {
  const docs: Record<string, unknown> = {
    "/api/v1": {
      resources: [
        {
          name: "pods",
          singularName: "pod",
          shortNames: ["po"],
          namespaced: true,
          kind: "Pod",
          verbs: ["list", "watch"],
        },
        { name: "pods/log", namespaced: true, kind: "Pod", verbs: ["get"] },
        { name: "namespaces", namespaced: false, kind: "Namespace", verbs: ["list", "watch"] },
        { name: "bindings", namespaced: true, kind: "Binding", verbs: ["create"] },
      ],
    },
    "/apis": {
      groups: [
        {
          name: "apps",
          versions: [{ groupVersion: "apps/v1", version: "v1" }],
          preferredVersion: { groupVersion: "apps/v1", version: "v1" },
        },
      ],
    },
    "/apis/apps/v1": {
      resources: [
        {
          name: "deployments",
          shortNames: ["deploy"],
          namespaced: true,
          kind: "Deployment",
          verbs: ["list", "watch"],
        },
      ],
    },
  };
  let calls = 0;
  const client = {
    get: (path: string) => {
      calls++;
      const d = docs[path];
      return d ? Promise.resolve(d) : Promise.reject(new Error(`404 ${path}`));
    },
  } as unknown as KubeClient;

  it("resolves core, grouped, versioned and short names like kubectl", async () => {
    const d = new Discovery(client);
    expect(await d.resolve("pods")).to.deep.include({
      group: "",
      version: "v1",
      kind: "Pod",
      namespaced: true,
    });
    expect(await d.resolve("po")).to.deep.include({ plural: "pods" });
    const deploy = await d.resolve("deployments.apps");
    expect(deploy).to.deep.equal({
      group: "apps",
      version: "v1",
      plural: "deployments",
      kind: "Deployment",
      namespaced: true,
      apiVersion: "apps/v1",
    });
    expect(await d.resolve("deployments")).to.deep.equal(deploy);
    expect(await d.resolve("deploy.v1.apps")).to.deep.equal(deploy);
    expect(collectionPath(deploy, "team-a")).to.equal(
      "/apis/apps/v1/namespaces/team-a/deployments",
    );
    const ns = await d.resolve("namespaces");
    expect(ns.namespaced).to.equal(false);
    expect(collectionPath(ns, "team-a")).to.equal("/api/v1/namespaces");
  });

  it("refuses unknown and unwatchable resources, and finds a resource served since the last look-up", async () => {
    const d = new Discovery(client);
    await d.resolve("pods");
    const err = await d.resolve("widgets.example.com").catch((e: unknown) => e);
    expect(err).to.be.instanceOf(UnknownResourceError);
    expect(String(err)).to.match(/widgets\.example\.com.*not served/);
    expect(await d.resolve("bindings").catch((e: unknown) => String(e))).to.match(
      /cannot be listed and watched/,
    );

    const before = calls;
    (docs["/apis"] as { groups: unknown[] }).groups.push({
      name: "example.com",
      versions: [{ groupVersion: "example.com/v1", version: "v1" }],
      preferredVersion: { groupVersion: "example.com/v1", version: "v1" },
    });
    docs["/apis/example.com/v1"] = {
      resources: [{ name: "widgets", namespaced: true, kind: "Widget", verbs: ["list", "watch"] }],
    };
    expect(await d.resolve("widgets.example.com")).to.deep.include({
      kind: "Widget",
      apiVersion: "example.com/v1",
    });
    expect(calls).to.be.greaterThan(before);
  });
});
