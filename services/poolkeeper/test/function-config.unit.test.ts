import { FizzError } from "@fizz/events";
import type { V1ConfigMap, V1Secret } from "@kubernetes/client-node";
import { expect } from "chai";
import { CodeCache } from "../src/code-cache";
import { collect } from "../src/function-config";
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
