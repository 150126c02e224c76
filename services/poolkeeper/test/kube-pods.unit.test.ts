import { FizzError, type Environment } from "@fizz/events";
import type { V1Pod, V1PodStatus } from "@kubernetes/client-node";
import { expect } from "chai";
import { loadConfig } from "../src/config";
import {
  UnclaimedPods,
  sortFoundPods,
  specializedPatch,
  specializedRecordOf,
} from "../src/kube-adoption";
import {
  conditionOf,
  newInstanceId,
  podManifest,
  resourcesFor,
  specializeTokenOf,
} from "../src/kube-pods";
import { environment } from "./harness";

const DEFAULTS = { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "256Mi" } };
const OPTS = {
  namespace: "fizz",
  resources: DEFAULTS,
  imagePullPolicy: "IfNotPresent" as const,
  runAsUser: 65532,
  terminationGraceSeconds: 2,
  specializeToken: "tok-123",
};

/** A pod as the informer would show it: the manifest plus a status. */
function podOf(env: Environment, id: string, status: V1PodStatus): V1Pod {
  return { ...podManifest(env, id, OPTS), status };
}
const RUNNING_READY: V1PodStatus = {
  phase: "Running",
  podIP: "127.0.0.7",
  conditions: [{ type: "Ready", status: "True" }],
};

describe("kubernetes backend: pods", () => {
  const env = environment("node", "fizz/env-node", 2);

  it("builds a bare, locked-down pod that is never restarted and probes /healthz", () => {
    const pod = podManifest(env, "node-0123456789", OPTS);
    expect(pod.metadata?.labels).to.deep.equal({
      "fizz.dev/managed-by": "poolkeeper",
      "fizz.dev/environment": "node",
      "fizz.dev/environment-namespace": "default",
      "fizz.dev/state": "warm",
      "fizz.dev/instance": "node-0123456789",
    });
    expect(pod.metadata?.annotations).to.deep.equal({ "fizz.dev/environment-uid": "uid-node" });
    const spec = pod.spec!;
    expect(spec).to.include({ restartPolicy: "Never", automountServiceAccountToken: false });
    expect(spec.securityContext).to.include({ runAsNonRoot: true, runAsUser: 65532 });
    const c = spec.containers[0]!;
    expect(c.image).to.equal("fizz/env-node");
    expect(c.ports).to.deep.equal([{ name: "http", containerPort: 8888 }]);
    expect(c.env).to.deep.include({ name: "FIZZ_INSTANCE_ID", value: "node-0123456789" });
    expect(c.env).to.deep.include({ name: "PORT", value: "8888" });
    expect(c.readinessProbe?.httpGet?.path).to.equal("/healthz");
    expect(c.livenessProbe?.httpGet?.path).to.equal("/healthz");
    expect(c.resources).to.deep.equal(DEFAULTS);
    expect(c.securityContext).to.deep.equal({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    expect(spec.securityContext?.seccompProfile).to.deep.equal({ type: "RuntimeDefault" });
    expect(c.command).to.equal(undefined);
    // Only the documented variables; the token is read back from the pod by a later poolkeeper.
    expect(c.env?.map((e) => e.name).sort()).to.deep.equal(
      [
        "FIZZ_INSTANCE_ID",
        "FIZZ_SPECIALIZE_TOKEN",
        "FIZZ_SECRETS_DIR",
        "FIZZ_CONFIGS_DIR",
        "HOME",
        "PORT",
        "PYTHONUNBUFFERED",
      ].sort(),
    );
    expect(specializeTokenOf(pod)).to.equal("tok-123");
  });

  it("gives the runtime /secrets (in memory) and /configs as emptyDirs, named by FIZZ_SECRETS_DIR and FIZZ_CONFIGS_DIR", () => {
    const pod = podManifest(env, "node-0123456789", OPTS);
    const c = pod.spec!.containers[0]!;
    expect(c.env).to.deep.include({ name: "FIZZ_SECRETS_DIR", value: "/secrets" });
    expect(c.env).to.deep.include({ name: "FIZZ_CONFIGS_DIR", value: "/configs" });
    expect(c.volumeMounts).to.deep.include({ name: "secrets", mountPath: "/secrets" });
    expect(c.volumeMounts).to.deep.include({ name: "configs", mountPath: "/configs" });
    const vol = (name: string) => pod.spec!.volumes!.find((v) => v.name === name);
    // Memory-backed: secret values never reach the node's disk. Never a Secret volume: a warm
    // pod does not know its function yet, and the pod gets no API access.
    expect(vol("secrets")).to.deep.equal({
      name: "secrets",
      emptyDir: { medium: "Memory", sizeLimit: "40Mi" },
    });
    expect(vol("configs")).to.deep.equal({ name: "configs", emptyDir: {} });
    expect(pod.spec!.volumes!.every((v) => v.emptyDir !== undefined)).to.equal(true);
  });

  it("takes the environment's own resources over the defaults, value by value", () => {
    const withRes = environment("py", "fizz/env-python", 1);
    (withRes.spec as Record<string, unknown>).resources = {
      limits: { memory: "1Gi", cpu: "2" },
    };
    expect(resourcesFor(withRes, DEFAULTS)).to.deep.equal({
      requests: { cpu: "50m", memory: "64Mi" },
      limits: { memory: "1Gi", cpu: "2" },
    });
  });

  it("makes instance ids that are DNS-1123 labels, whatever the environment's name", () => {
    for (const name of ["node", "a".repeat(63), `${"b".repeat(51)}-x`]) {
      const id = newInstanceId(name);
      expect(id).to.match(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
    }
  });

  it("reads a pod's condition: ready with its address, fatal waits, ends with the reason", () => {
    expect(conditionOf(podOf(env, "a", RUNNING_READY))).to.deep.equal({
      kind: "ready",
      address: "http://127.0.0.7:8888",
    });
    expect(conditionOf(podOf(env, "a", { ...RUNNING_READY, conditions: [] })).kind).to.equal(
      "unready",
    );
    const pulling = conditionOf(
      podOf(env, "a", {
        phase: "Pending",
        containerStatuses: [
          {
            name: "runtime",
            image: "x",
            imageID: "",
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: "ErrImagePull", message: "not found" } },
          },
        ],
      }),
    );
    expect(pulling).to.deep.equal({ kind: "pending", fatal: "ErrImagePull: not found" });
    const failed = conditionOf(
      podOf(env, "a", {
        phase: "Failed",
        containerStatuses: [
          {
            name: "runtime",
            image: "x",
            imageID: "",
            ready: false,
            restartCount: 0,
            state: { terminated: { exitCode: 137, reason: "OOMKilled" } },
          },
        ],
      }),
    );
    expect(failed).to.deep.equal({
      kind: "ended",
      reason: "pod a failed with code 137 (OOMKilled)",
      code: 137,
    });
  });

  it("writes a specialization on the pod so that a restart reads the same record back", () => {
    const record = {
      function: { namespace: "default", name: "hello", revision: 3 },
      concurrency: 5,
      specializedAt: 1_700_000_000_000,
    };
    const pod = podOf(env, "node-1", RUNNING_READY);
    for (const op of specializedPatch(record) as Array<{ path: string; value: string }>) {
      const [, , where, key] = op.path.split("/");
      const map = (pod.metadata![where as "labels" | "annotations"] ??= {});
      map[key!.replace("~1", "/")] = op.value;
    }
    expect(pod.metadata?.labels?.["fizz.dev/state"]).to.equal("specialized");
    expect(pod.metadata?.labels?.["fizz.dev/function"]).to.equal("hello");
    expect(specializedRecordOf(pod)).to.deep.equal(record);
  });

  it("sorts the pods found at start: specialized adopted, warm claimable, the rest deleted", () => {
    const special = podOf(env, "s", RUNNING_READY);
    Object.assign(special.metadata!.labels!, {
      "fizz.dev/state": "specialized",
      "fizz.dev/function": "hello",
      "fizz.dev/function-namespace": "default",
      "fizz.dev/function-revision": "1",
    });
    Object.assign(special.metadata!.annotations!, {
      "fizz.dev/concurrency": "2",
      "fizz.dev/specialized-at": "5",
    });
    const noRecord = podOf(env, "n", RUNNING_READY);
    noRecord.metadata!.labels!["fizz.dev/state"] = "specialized";
    const failed = podOf(env, "f", { phase: "Failed" });
    const terminating = podOf(env, "t", RUNNING_READY);
    terminating.metadata!.deletionTimestamp = new Date();
    const found = sortFoundPods([
      special,
      noRecord,
      failed,
      terminating,
      podOf(env, "w", { phase: "Pending" }),
    ]);
    expect(found.specialized.map((f) => [f.name, f.address, f.function.name])).to.deep.equal([
      ["s", "http://127.0.0.7:8888", "hello"],
    ]);
    expect(found.warm).to.deep.equal(["w"]);
    expect(found.remove.map((r) => r.name)).to.deep.equal(["n", "f"]);
  });

  it("hands a found warm pod only to its own environment object and image, a Ready one first", () => {
    const pods = new Map<string, V1Pod>([
      ["pending", podOf(env, "pending", { phase: "Pending" })],
      ["ready", podOf(env, "ready", RUNNING_READY)],
      [
        "other-image",
        podOf(environment("node", "fizz/env-node:2", 2), "other-image", RUNNING_READY),
      ],
    ]);
    const u = new UnclaimedPods((n) => pods.get(n));
    for (const n of pods.keys()) u.add(n);
    const recreated = { ...env, metadata: { ...env.metadata, uid: "uid-new" } };
    expect(u.claim(recreated)).to.equal(undefined);
    expect(u.claim(env)).to.equal("ready");
    expect(u.claim(env)).to.equal("pending");
    expect(u.claim(env)).to.equal(undefined);
    expect(u.drain()).to.deep.equal(["other-image"]);
  });
});

describe("loadConfig: kubernetes backend", () => {
  it("defaults to namespace fizz, modest requests and a memory limit", () => {
    const c = loadConfig({ FIZZ_POOLKEEPER_BACKEND: "kubernetes" });
    expect(c.backend).to.equal("kubernetes");
    expect(c.kubernetes).to.deep.include({
      namespace: "fizz",
      kubeconfig: undefined,
      inCluster: false,
      imagePullPolicy: "IfNotPresent",
      runAsUser: 65532,
    });
    expect(c.kubernetes.resources).to.deep.equal({
      requests: DEFAULTS.requests,
      limits: { cpu: "1", memory: "256Mi" },
    });
    const none = loadConfig({
      FIZZ_POD_MEMORY_LIMIT: "none",
      FIZZ_POD_CPU_LIMIT: "none",
      KUBERNETES_SERVICE_HOST: "10.0.0.1",
    });
    expect(none.kubernetes.resources.limits).to.deep.equal({});
    expect(none.kubernetes.inCluster).to.equal(true);
  });

  it("names a bad namespace or quantity", () => {
    for (const [name, value] of [
      ["FIZZ_POOLKEEPER_NAMESPACE", "Fizz_NS"],
      ["FIZZ_POD_CPU_REQUEST", "lots"],
      ["FIZZ_POD_MEMORY_LIMIT", "12 MB"],
      ["FIZZ_POD_IMAGE_PULL_POLICY", "Sometimes"],
    ] as const) {
      let err: unknown;
      try {
        loadConfig({ [name]: value });
      } catch (e) {
        err = e;
      }
      expect(err, name).to.be.instanceOf(FizzError);
      expect((err as FizzError).field).to.equal(name);
    }
  });
});
