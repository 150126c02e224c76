import { FizzError } from "@fizz/events";
import type { V1ConfigMap, V1Secret } from "@kubernetes/client-node";
import { expect } from "chai";
import { CodeCache } from "../src/code-cache";
import { collect, layeredConfigResolver } from "../src/function-config";
import {
  CONFIG_NAMESPACE_LABEL,
  kubeConfigResolver,
  type ConfigObjectReader,
} from "../src/kube-function-config";

/** Secrets and ConfigMaps as the API server would hold them in the pods' namespace. */
class Objects implements ConfigObjectReader {
  readonly namespace = "fizz";
  readonly secrets = new Map<string, V1Secret>();
  readonly configmaps = new Map<string, V1ConfigMap>();
  readonly reads: string[] = [];
  readSecret(name: string) {
    this.reads.push(`secret/${name}`);
    return Promise.resolve(this.secrets.get(name));
  }
  readConfigMap(name: string) {
    this.reads.push(`configmap/${name}`);
    return Promise.resolve(this.configmaps.get(name));
  }
}

const labelled = (ns: string) => ({ labels: { [CONFIG_NAMESPACE_LABEL]: ns } });

async function rejection(p: Promise<unknown>): Promise<FizzError> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(FizzError);
    return err as FizzError;
  }
  throw new Error("expected a rejection");
}

describe("function config on Kubernetes (Secrets and ConfigMaps of the pods' namespace)", () => {
  it("returns Secret data as is (base64) and ConfigMap data base64-encoded, binaryData as is", async () => {
    const o = new Objects();
    o.secrets.set("db", { metadata: labelled("default"), data: { password: "czNjcmV0" } });
    o.configmaps.set("settings", {
      metadata: labelled("default"),
      data: { mode: "fast" },
      binaryData: { logo: "AAEC" },
    });
    const got = await kubeConfigResolver(o)("default", ["db"], ["settings"]);
    expect(got).to.deep.equal({
      secrets: { db: { password: "czNjcmV0" } },
      configmaps: { settings: { mode: Buffer.from("fast").toString("base64"), logo: "AAEC" } },
    });
  });

  it("refuses the platform's own Secret (no fizz.dev/namespace label) as MISSING_CONFIG, without its values", async () => {
    const o = new Objects();
    o.secrets.set("fizz-credentials", {
      metadata: { name: "fizz-credentials" },
      data: { "nats-poolkeeper-password": Buffer.from("hunter2").toString("base64") },
    });
    const err = await rejection(kubeConfigResolver(o)("default", ["fizz-credentials"], []));
    expect(err.code).to.equal("MISSING_CONFIG");
    expect(err.message).to.include("secret default/fizz-credentials");
    expect(err.message).to.include(`${CONFIG_NAMESPACE_LABEL}=default`);
    expect(err.message).to.not.include(Buffer.from("hunter2").toString("base64"));
  });

  it("refuses a Secret labelled for another Fizz namespace, with the same message as a missing one", async () => {
    const o = new Objects();
    o.secrets.set("db", { metadata: labelled("team-b"), data: { password: "eA==" } });
    const other = await rejection(kubeConfigResolver(o)("team-a", ["db"], []));
    const none = await rejection(kubeConfigResolver(new Objects())("team-a", ["db"], []));
    expect(other.code).to.equal("MISSING_CONFIG");
    expect(other.message).to.equal(none.message);
    expect(other.field).to.equal("spec.secrets");
  });

  it("names the first missing configmap", async () => {
    const o = new Objects();
    o.configmaps.set("a", { metadata: labelled("default"), data: {} });
    const err = await rejection(kubeConfigResolver(o)("default", [], ["a", "b", "c"]));
    expect(err.message).to.match(/^configmap default\/b does not exist/);
    expect(err.field).to.equal("spec.configmaps");
  });

  it("a registry reply that leaves out a name asked for is MISSING_CONFIG, never a silent gap", () => {
    expect(() =>
      collect("default", "secret", ["a", "b"], [{ name: "a", data: { k: "dg==" } }]),
    ).to.throw(FizzError, /secret default\/b/);
  });
});

describe("code cache", () => {
  it("keeps blobs up to the entry limit, evicts the least recently used past the total", () => {
    const cache = new CodeCache(3000, 1000);
    const blob = (n: number) => Buffer.alloc(n);
    cache.set("big", blob(1001));
    expect(cache.get("big")).to.equal(undefined);
    cache.set("a", blob(1000));
    cache.set("b", blob(1000));
    cache.set("c", blob(1000));
    cache.get("a"); // now b is the oldest
    cache.set("d", blob(1000));
    expect(cache.get("b")).to.equal(undefined);
    expect(cache.get("a")).to.not.equal(undefined);
    expect(cache.size).to.deep.equal({ entries: 3, bytes: 3000 });
  });
});

describe("function config on Kubernetes, registry first (layeredConfigResolver)", () => {
  /** The registry's objects, as registryConfigLookup would find them. */
  const registry =
    (held: { secrets?: string[]; configmaps?: string[] }, calls: string[]) =>
    (ns: string, secrets: readonly string[], configmaps: readonly string[]) => {
      calls.push(`${ns}:${[...secrets, ...configmaps].join(",")}`);
      const pick = (names: readonly string[], have: string[] = []) =>
        new Map(names.filter((n) => have.includes(n)).map((n) => [n, { from: "cmVnaXN0cnk=" }]));
      return Promise.resolve({
        secrets: pick(secrets, held.secrets),
        configmaps: pick(configmaps, held.configmaps),
      });
    };

  it("gives the registry's object where it has one and the cluster's labelled object for the rest", async () => {
    const o = new Objects();
    o.configmaps.set("guestbook", { metadata: labelled("default"), data: { from: "cluster" } });
    o.configmaps.set("legacy", { metadata: labelled("default"), data: { from: "cluster" } });
    const calls: string[] = [];
    const resolve = layeredConfigResolver(
      registry({ configmaps: ["guestbook"] }, calls),
      kubeConfigResolver(o),
    );
    const got = await resolve("default", [], ["guestbook", "legacy"]);
    expect(got.configmaps.guestbook).to.deep.equal({ from: "cmVnaXN0cnk=" });
    expect(got.configmaps.legacy).to.deep.equal({
      from: Buffer.from("cluster").toString("base64"),
    });
    // The cluster is asked only for what the registry lacked.
    expect(o.reads).to.deep.equal(["configmap/legacy"]);
  });

  it("refuses a name in neither place, and a cluster object labelled for another namespace", async () => {
    const o = new Objects();
    o.secrets.set("db", { metadata: labelled("team-b"), data: { password: "eA==" } });
    const resolve = layeredConfigResolver(registry({}, []), kubeConfigResolver(o));
    const err = await rejection(resolve("team-a", ["db"], []));
    expect(err.code).to.equal("MISSING_CONFIG");
    expect(err.message).to.not.include("eA==");
  });

  it("asks nobody when the function names no secret and no configmap", async () => {
    const o = new Objects();
    const calls: string[] = [];
    const got = await layeredConfigResolver(registry({}, calls), kubeConfigResolver(o))(
      "default",
      [],
      [],
    );
    expect(got).to.deep.equal({ secrets: {}, configmaps: {} });
    expect(calls).to.deep.equal([]);
    expect(o.reads).to.deep.equal([]);
  });

  it("fails when the registry cannot be asked, rather than starting the function on the cluster's copy", async () => {
    const o = new Objects();
    o.configmaps.set("guestbook", { metadata: labelled("default"), data: { from: "cluster" } });
    const down = () =>
      Promise.reject(new FizzError("UNAVAILABLE", "nothing answers", { retryable: true }));
    const err = await rejection(
      layeredConfigResolver(down, kubeConfigResolver(o))("default", [], ["guestbook"]),
    );
    expect(err.code).to.equal("UNAVAILABLE");
    expect(o.reads).to.deep.equal([]);
  });
});
