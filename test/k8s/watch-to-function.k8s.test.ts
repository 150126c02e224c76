import { expect } from "chai";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startK8sLite, type K8sLite } from "@fizz/testkit";
import { startPlatform, type Platform } from "../e2e/helpers";
import { dumpLogsOnFailure, eventually, fizzOk } from "../e2e/probes";

/**
 * Kubernetes events reach a function: the platform (process backend) with its kubewatcher pointed
 * at a real kube-apiserver, a watch trigger created with the CLI, and a real Node function that
 * records what it receives. The kubewatcher's own suites cover restarts, resync and replicas.
 */
describe("Kubernetes events trigger a function, end to end", function () {
  this.timeout(180_000);
  let k: K8sLite;
  let p: Platform;
  afterEach(dumpLogsOnFailure(() => p, 120));

  before(async () => {
    k = await startK8sLite();
    p = await startPlatform({ FIZZ_KUBECONFIG: k.kubeconfig });
  });
  after(async () => {
    await p?.stop();
    await k?.stop();
    rmSync(eventsDir, { recursive: true, force: true });
  });

  // Instances run as unprivileged uids when the tests run as root: the function's log lives in a
  // directory they may write, not in the test's owner-only work dir.
  const eventsDir = mkdtempSync(path.join(tmpdir(), "fizz-watch-events-"));
  chmodSync(eventsDir, 0o777);
  const eventsFile = path.join(eventsDir, "events.log");
  const events = () => {
    try {
      return readFileSync(eventsFile, "utf8")
        .trim()
        .split("\n")
        .filter(Boolean)
        .map(
          (l) => JSON.parse(l) as { type: string; kind: string; name: string; data: string | null },
        );
    } catch {
      return [];
    }
  };

  it("delivers create, modify and delete of a labelled ConfigMap in order, and ignores unlabelled ones", async () => {
    const file = eventsFile;
    await p.file(
      "on-event.js",
      `const fs = require("fs");
module.exports = async (ctx) => {
  const obj = ctx.body;
  fs.appendFileSync(${JSON.stringify(file)}, JSON.stringify({
    type: ctx.headers["x-kubernetes-event-type"],
    kind: ctx.headers["x-kubernetes-object-type"],
    name: obj.metadata.name,
    data: obj.data ? obj.data.v : null,
  }) + "\\n");
  return "ok";
};
`,
    );
    await fizzOk(p, "env create --name nodejs --image fizz/env-node");
    await fizzOk(p, "fn create --name on-event --env nodejs --code on-event.js");
    await fizzOk(
      p,
      "watch create --name cm --function on-event --type configmaps --labels app=demo",
    );
    await new Promise((r) => setTimeout(r, 2000)); // the kubewatcher starts its informer

    const kc = (...args: string[]) => {
      const r = k.kubectl(...args);
      expect(r.status, r.stderr).to.equal(0);
    };
    kc("create", "configmap", "plain", "-n", "default", "--from-literal=v=0");
    kc("create", "configmap", "watched", "-n", "default", "--from-literal=v=1");
    kc("label", "configmap", "watched", "-n", "default", "app=demo");
    kc("patch", "configmap", "watched", "-n", "default", "-p", '{"data":{"v":"2"}}');
    kc("delete", "configmap", "watched", "-n", "default");

    const got = await eventually(
      "three deliveries",
      () => (events().length >= 3 ? events() : undefined),
      60_000,
      200,
    );
    // Labelling makes the object enter the selection: the apiserver reports it as ADDED.
    expect(got.map((e) => e.type)).to.deep.equal(["ADDED", "MODIFIED", "DELETED"]);
    expect(got.map((e) => e.data)).to.deep.equal(["1", "2", "2"]);
    for (const e of got) expect(e).to.include({ kind: "ConfigMap", name: "watched" });
    await new Promise((r) => setTimeout(r, 1000));
    expect(events().map((e) => e.name)).to.not.include("plain");
  });
});
