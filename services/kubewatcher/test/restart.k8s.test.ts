import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { freePort, waitFor } from "@fizz/testkit";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { expect } from "chai";
import type { Kubewatcher } from "../src/index";
import { KubeHarness, seen, watchTrigger } from "./harness";

const MAIN = path.resolve(import.meta.dirname, "../src/main.ts");

/**
 * Restarts and replicas: the resume point survives a restart (no replay, no loss), triggers change
 * while no kubewatcher runs, and two replicas deliver each event once, also when the leader dies
 * without releasing its lock.
 */
describe("kubewatcher restarts and replicas (k8s-lite + nats-server)", function () {
  this.timeout(120_000);
  const h = new KubeHarness();
  let child: ChildProcess | undefined;

  before(() => h.setUp());
  after(async () => {
    child?.kill("SIGKILL");
    await h.tearDown();
  });

  it("after a restart delivers every change made while it was down, and no ADDED storm for objects it already knew", async () => {
    await h.namespace("r-down");
    await h.changed(
      "created",
      watchTrigger("r-down", "while-down", { resource: "configmaps", labels: "r=1" }),
    );
    let kw = await h.startKubewatcher();
    await h.waitWatching(kw, "r-down/while-down");
    for (const name of ["a", "b", "c"]) await h.createConfigMap("r-down", name, { r: "1" });
    await h.waitFor("while-down", 3);
    await h.stopKubewatcher(kw);

    await h.updateConfigMap("r-down", "a", { v: "2" });
    await h.deleteConfigMap("r-down", "b");
    await h.createConfigMap("r-down", "d", { r: "1" });
    await h.createConfigMap("r-down", "unlabelled");
    // A trigger created while no kubewatcher runs is found by the listing at start.
    await h.namespace("r-new");
    await h.changed(
      "created",
      watchTrigger("r-new", "created-while-down", { resource: "configmaps" }),
    );

    kw = await h.startKubewatcher();
    await h.waitFor("while-down", 6);
    await h.waitWatching(kw, "r-new/created-while-down");
    await new Promise((r) => setTimeout(r, 500));
    const invs = h.of("while-down");
    expect(seen(invs)).to.deep.equal([
      "ADDED a",
      "ADDED b",
      "ADDED c",
      "MODIFIED a",
      "DELETED b",
      "ADDED d",
    ]);
    expect(new Set(invs.map((i) => i.callId)).size).to.equal(6);
    await h.stopKubewatcher(kw);
  });

  it("forgets the resume point of a trigger deleted while no kubewatcher ran", async () => {
    await h.namespace("r-gone");
    const t = watchTrigger("r-gone", "doomed", { resource: "secrets" });
    await h.changed("created", t);
    let kw = await h.startKubewatcher();
    await h.waitWatching(kw, "r-gone/doomed");
    const before = await cursorKeys(h);
    await h.stopKubewatcher(kw);
    await h.changed("deleted", t);
    kw = await h.startKubewatcher();
    await waitFor(() => kw.isLeader(), { timeoutMs: 10_000, what: "leader" });
    await waitFor(async () => (await cursorKeys(h)).length === before.length - 1, {
      what: "one cursor fewer",
    });
    await h.stopKubewatcher(kw);
  });

  it("two replicas deliver each event once; when the leader stops, the follower takes over where it left off", async () => {
    await h.namespace("r-pair");
    await h.changed("created", watchTrigger("r-pair", "pair", { resource: "configmaps" }));
    const a = await h.startKubewatcher();
    const b = await h.startKubewatcher();
    const leader = await waitFor(() => (a.isLeader() ? a : b.isLeader() ? b : undefined), {
      timeoutMs: 10_000,
      what: "a leader",
    });
    const follower = leader === a ? b : a;
    expect(follower.isLeader()).to.equal(false);
    expect(follower.status()["r-pair/pair"]?.state).to.equal("standby");
    await h.waitWatching(leader, "r-pair/pair");
    for (let i = 0; i < 5; i++) await h.createConfigMap("r-pair", `one-${i}`);
    await h.waitFor("pair", 5);
    expect(await published(follower), "the follower published nothing").to.equal(0);
    expect(await published(leader)).to.equal(5);

    await h.stopKubewatcher(leader);
    for (let i = 0; i < 5; i++) await h.createConfigMap("r-pair", `two-${i}`);
    await waitFor(() => follower.isLeader(), { timeoutMs: 10_000, what: "follower elected" });
    await h.waitFor("pair", 10);
    await new Promise((r) => setTimeout(r, 500));
    const names = seen(h.of("pair"));
    expect(names).to.deep.equal([
      ...[0, 1, 2, 3, 4].map((i) => `ADDED one-${i}`),
      ...[0, 1, 2, 3, 4].map((i) => `ADDED two-${i}`),
    ]);
    await h.stopKubewatcher(follower);
  });

  it("when the leader is killed (its lock not released), the follower takes over after the TTL and misses nothing", async () => {
    await h.namespace("r-kill");
    await h.changed("created", watchTrigger("r-kill", "survivor", { resource: "configmaps" }));
    const port = await freePort();
    let output = "";
    child = spawn(process.execPath, ["--import", "tsx", MAIN], {
      env: h.childEnv({ FIZZ_KUBEWATCHER_PORT: String(port) }),
      stdio: ["pipe", "pipe", "pipe"],
    });
    child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    // Leading, with every trigger's informer listed and watching (an object created before its
    // first listing would count as pre-existing and not be announced).
    const childWatchesAll = async () => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const watching = /^fizz_kubewatcher_triggers\{[^}]*state="watching"[^}]*\} (\d+)$/m.exec(
        text,
      );
      return (
        /^fizz_kubewatcher_leader(\{[^}]*\})? 1$/m.test(text) &&
        Number(watching?.[1]) === h.triggers.size
      );
    };
    await waitFor(childWatchesAll, { timeoutMs: 30_000, what: `the child leads: ${output}` });
    const follower: Kubewatcher = await h.startKubewatcher();
    expect(follower.isLeader()).to.equal(false);
    await h.createConfigMap("r-kill", "early");
    await h.waitFor("survivor", 1);
    expect(await published(follower), "the follower published nothing").to.equal(0);

    child.kill("SIGKILL");
    const killedAt = Date.now();
    for (let i = 0; i < 5; i++) await h.createConfigMap("r-kill", `late-${i}`);
    await h.updateConfigMap("r-kill", "early", { changed: "yes" });
    await waitFor(() => follower.isLeader(), { timeoutMs: 15_000, what: "follower elected" });
    const tookOverMs = Date.now() - killedAt;
    await h.waitFor("survivor", 7);
    await new Promise((r) => setTimeout(r, 500));
    expect(seen(h.of("survivor"))).to.deep.equal([
      "ADDED early",
      ...[0, 1, 2, 3, 4].map((i) => `ADDED late-${i}`),
      "MODIFIED early",
    ]);
    // The lock lives 2 s; the follower polls every 0.5 s.
    expect(tookOverMs).to.be.within(1_000, 6_000);
    await h.stopKubewatcher(follower);
  });
});

/** Invocations a replica has published (all event types). */
async function published(kw: Kubewatcher): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${kw.opsPort}/metrics`)).text();
  return [...text.matchAll(/^fizz_kubewatcher_invocations_total\{[^}]*\} (\S+)$/gm)].reduce(
    (sum, m) => sum + Number(m[1]),
    0,
  );
}

async function cursorKeys(h: KubeHarness): Promise<string[]> {
  const kv = await new Kvm(jetstream(h.nc)).open("fizz_kubewatcher");
  const keys: string[] = [];
  for await (const k of await kv.keys("cursor.*")) keys.push(k);
  return keys;
}
