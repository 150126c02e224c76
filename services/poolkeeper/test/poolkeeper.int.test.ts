import { readdir } from "node:fs/promises";
import path from "node:path";
import { Codecs, FizzError, type SpecializeRequest } from "@fizz/events";
import { request as natsRequest } from "@fizz/kit";
import { waitFor } from "@fizz/testkit";
import { expect } from "chai";
import { request } from "undici";
import { Harness, alive, environment } from "./harness";

/**
 * One poolkeeper for the suite (the machine is small): real NATS (JetStream), real runtime
 * processes from runtimes/node and runtimes/python. The test is the registry.
 */
describe("poolkeeper (process backend, real runtimes)", function () {
  this.timeout(60_000);
  const h = new Harness();
  const NODE_HELLO = "module.exports = async () => 'Hello, world!';\n";
  const PY_HELLO = 'def main():\n    print("Hello, world!")\n';

  const warm = (name: string) => h.pk.pool.status({ namespace: "default", name })?.warm ?? -1;
  const instancesOf = (name: string) =>
    h.pk.pool.list().filter((t) => t.instance.environment.name === name);
  const specialize = (data: SpecializeRequest) =>
    natsRequest(h.nc, h.s.poolkeeperSpecialize, Codecs.poolkeeperSpecialize, data, {
      sender: "test",
      timeoutMs: 20_000,
    });
  const fnRef = (name: string) => ({ namespace: "default", name, revision: 1 });
  async function get(address: string, instanceId: string) {
    const res = await request(address, { headers: { "x-fizz-instance": instanceId } });
    return { status: res.statusCode, text: await res.body.text() };
  }
  async function failure(p: Promise<unknown>): Promise<FizzError> {
    try {
      await p;
    } catch (err) {
      expect(err).to.be.instanceOf(FizzError);
      return err as FizzError;
    }
    throw new Error("expected a failure");
  }

  before(async () => {
    await h.setUp();
    h.environments.set("node", environment("node", "fizz/env-node", 2));
    h.environments.set("python", environment("python", "fizz/env-python", 1));
    h.environments.set("cold", environment("cold", "fizz/env-node", 0));
    await h.startPoolkeeper();
  });
  after(() => h.tearDown());

  it("waits for the registry to answer registry.list, then fills every pool with live processes", async () => {
    // Nobody answers yet: the poolkeeper keeps retrying.
    await new Promise((r) => setTimeout(r, 300));
    expect(h.pk.pool.list()).to.have.length(0);
    h.answerRegistry();
    await h.pk.synced;
    await waitFor(() => warm("node") === 2 && warm("python") === 1, {
      timeoutMs: 20_000,
      what: "pools filled",
    });
    for (const t of h.pk.pool.list()) {
      expect(alive(t.instance.pid), t.instance.id).to.equal(true);
      const res = await request(`${t.instance.address}/healthz`);
      expect(await res.body.json()).to.deep.include({ state: "warm" });
    }
    expect(instancesOf("cold")).to.have.length(0);
    await waitFor(() => h.events.filter((e) => e.event === "ready").length >= 3);
  });

  it("specializes a node hello world from a warm instance; its address answers for X-Fizz-Instance; the pool refills", async () => {
    const code = await h.putCode("hello.js", NODE_HELLO);
    const before = new Set(instancesOf("node").map((t) => t.instance.id));
    const t0 = performance.now();
    const { instance } = await specialize({
      environment: { namespace: "default", name: "node" },
      function: fnRef("hello-node"),
      code,
      concurrency: 5,
    });
    const ms = performance.now() - t0;
    expect(before.has(instance.id), "taken from the warm pool").to.equal(true);
    expect(instance).to.include({ state: "specialized", concurrency: 5, backend: "process" });
    expect(ms, `specialize took ${ms.toFixed(1)} ms`).to.be.below(1000);
    expect(await get(instance.address, instance.id)).to.deep.equal({
      status: 200,
      text: "Hello, world!",
    });
    await waitFor(() =>
      h.events.some((e) => e.event === "specialized" && e.instance.id === instance.id),
    );
    await waitFor(() => warm("node") === 2, { what: "node pool refilled" });
    expect(instancesOf("node")).to.have.length(3);
  });

  it("specializes a python hello world that prints; the print comes back and is published on logs.<ns>.<fn>", async () => {
    const code = await h.putCode("hello.py", PY_HELLO);
    const { instance } = await specialize({
      environment: { namespace: "default", name: "python" },
      function: fnRef("hello-py"),
      code,
      concurrency: 2,
    });
    const res = await get(instance.address, instance.id);
    expect(res.status).to.equal(200);
    expect(res.text.trim()).to.equal("Hello, world!");
    await waitFor(
      () =>
        h.logs.some(
          (l) =>
            l.subject === `${h.s.prefix}.logs.default.hello-py` &&
            l.line.line === "Hello, world!" &&
            l.line.instanceId === instance.id,
        ),
      { what: "the print on logs.default.hello-py" },
    );
    await waitFor(() => warm("python") === 1, { timeoutMs: 20_000, what: "python pool refilled" });
  });

  it("answers FUNCTION_LOAD_FAILED with the loader's file:line message for broken code, kills that instance and refills", async () => {
    await waitFor(() => warm("python") === 1, { timeoutMs: 20_000 });
    const victim = instancesOf("python").find((t) => t.state === "warm")!;
    const code = await h.putCode("broken.py", 'print "x"\n');
    const err = await failure(
      specialize({
        environment: { namespace: "default", name: "python" },
        function: fnRef("broken"),
        code,
        concurrency: 1,
      }),
    );
    expect(err.code).to.equal("FUNCTION_LOAD_FAILED");
    expect(err.message).to.match(/broken\.py:1/);
    await waitFor(() => !alive(victim.instance.pid), {
      what: "the failed instance's process gone",
    });
    await waitFor(() => warm("python") === 1, { timeoutMs: 20_000, what: "python pool refilled" });
  });

  it("answers NOT_FOUND naming code.digest when the code blob is not in the Object Store", async () => {
    const code = { filename: "x.js", digest: `sha256:${"0".repeat(64)}`, size: 1 };
    const err = await failure(
      specialize({
        environment: { namespace: "default", name: "node" },
        function: fnRef("x"),
        code,
        concurrency: 1,
      }),
    );
    expect(err.code).to.equal("NOT_FOUND");
    expect(err.field).to.equal("code.digest");
  });

  it("answers UNKNOWN_ENVIRONMENT for an environment the registry does not know", async () => {
    const code = await h.putCode("hello.js", NODE_HELLO);
    const err = await failure(
      specialize({
        environment: { namespace: "default", name: "ghost" },
        function: fnRef("x"),
        code,
        concurrency: 1,
      }),
    );
    expect(err.code).to.equal("UNKNOWN_ENVIRONMENT");
  });

  it("with an empty pool (poolSize 0) spawns an instance for the request and it works", async () => {
    const code = await h.putCode("hello.js", NODE_HELLO);
    const { instance } = await specialize({
      environment: { namespace: "default", name: "cold" },
      function: fnRef("cold-hello"),
      code,
      concurrency: 1,
    });
    expect(await get(instance.address, instance.id)).to.deep.equal({
      status: 200,
      text: "Hello, world!",
    });
    expect(warm("cold")).to.equal(0);
  });

  it("reports a warm instance killed with SIGKILL as died and replaces it", async () => {
    await waitFor(() => warm("node") === 2);
    const victim = instancesOf("node").find((t) => t.state === "warm")!;
    process.kill(victim.instance.pid!, "SIGKILL");
    const died = await waitFor(() =>
      h.events.find((e) => e.event === "died" && e.instance.id === victim.instance.id),
    );
    expect(died.reason).to.match(/SIGKILL/);
    await waitFor(
      () =>
        warm("node") === 2 &&
        !instancesOf("node").some((t) => t.instance.id === victim.instance.id),
    );
  });

  it("reports a specialized instance that dies with its function", async () => {
    const target = instancesOf("node").find(
      (t) => t.state === "specialized" && t.function?.name === "hello-node",
    )!;
    process.kill(target.instance.pid!, "SIGKILL");
    const died = await waitFor(() =>
      h.events.find((e) => e.event === "died" && e.instance.id === target.instance.id),
    );
    expect(died.instance.function?.name).to.equal("hello-node");
    expect(died.instance.state).to.equal("specialized");
  });

  it("lists warm and specialized instances; retire kills one and announces it", async () => {
    const list = await natsRequest(
      h.nc,
      h.s.poolkeeperList,
      Codecs.poolkeeperList,
      {},
      { sender: "test", timeoutMs: 5000 },
    );
    const states = new Set(list.instances.map((i) => i.state));
    expect(states).to.deep.equal(new Set(["warm", "specialized"]));
    const target = list.instances.find((i) => i.function?.name === "hello-py")!;
    const pid = h.pk.pool.get(target.id)!.instance.pid;
    const retire = (instanceId: string) =>
      natsRequest(
        h.nc,
        h.s.poolkeeperRetire,
        Codecs.poolkeeperRetire,
        { instanceId, reason: "idle" },
        { sender: "test", timeoutMs: 10_000 },
      );
    expect(await retire(target.id)).to.deep.equal({ retired: true });
    expect(alive(pid)).to.equal(false);
    await waitFor(() =>
      h.events.some(
        (e) => e.event === "retired" && e.instance.id === target.id && e.reason === "idle",
      ),
    );
    expect(h.events.some((e) => e.event === "died" && e.instance.id === target.id)).to.equal(false);
    expect(await retire(target.id)).to.deep.equal({ retired: false });
  });

  it("follows registry events: created fills, updated resizes, deleted kills the warm instances", async () => {
    await h.changed("created", environment("late", "fizz/env-node", 1));
    await waitFor(() => warm("late") === 1, { what: "late filled" });
    await h.changed("updated", { ...environment("late", "fizz/env-node", 2, 2) });
    await waitFor(() => warm("late") === 2, { what: "late resized" });
    const pids = instancesOf("late").map((t) => t.instance.pid);
    await h.changed("deleted", environment("late", "fizz/env-node", 2, 2));
    await waitFor(() => pids.every((p) => !alive(p)), { what: "late's instances gone" });
    expect(instancesOf("late")).to.have.length(0);
  });

  it("lists the environments again after a NATS reconnect, catching changes made while it was away", async () => {
    await h.nats.stop();
    h.environments.set("missed", environment("missed", "fizz/env-node", 1));
    await h.nats.restart();
    await waitFor(() => warm("missed") === 1, { timeoutMs: 20_000 }).catch((err: Error) => {
      const status = h.pk.pool.status({ namespace: "default", name: "missed" });
      throw new Error(`missed environment not filled (${JSON.stringify(status)}): ${err.message}`);
    });
  });

  it("is ready with NATS connected (no Redis check), and exports instance metrics", async () => {
    const ready = await request(`http://127.0.0.1:${h.pk.port}/readyz`);
    expect(ready.statusCode).to.equal(200);
    expect(await ready.body.json()).to.deep.include({ checks: { nats: true } });
    const text = await (await request(`http://127.0.0.1:${h.pk.port}/metrics`)).body.text();
    expect(text).to.match(/fizz_poolkeeper_instances\{[^}]*state="warm"[^}]*\} [1-9]/);
    expect(text).to.match(/fizz_poolkeeper_specializations_total\{[^}]*outcome="load_failed"/);
  });

  it("stop() kills every instance it started and removes their directories", async () => {
    const pids = h.pk.backend.list().map((i) => i.pid);
    expect(pids.length).to.be.greaterThan(3);
    expect(pids.every(alive)).to.equal(true);
    await h.pk.stop();
    expect(pids.filter(alive)).to.deep.equal([]);
    const left = await readdir(path.join(h.workDir, "instances")).catch(() => []);
    await waitFor(
      async () => (await readdir(path.join(h.workDir, "instances")).catch(() => [])).length === 0,
      {
        what: `instance dirs removed (${left.length} left)`,
      },
    );
  });
});
