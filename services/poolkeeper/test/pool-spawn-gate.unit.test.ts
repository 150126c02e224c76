import type { Environment, FizzError } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import { FakeClock, settle } from "@fizz/testkit";
import { expect } from "chai";
import type { BackendInstance } from "../src/backend";
import type { Tracked } from "../src/instances";
import { Pool, type PoolOptions } from "../src/pool";
import { FakeBackend, env } from "./fake-backend";

/** A backend whose spawns come up only when the test says so, in any order. */
class ManualBackend extends FakeBackend {
  readonly pending: Array<{ env: string; taken: boolean; up: () => void; fail: () => void }> = [];
  private seq = 0;

  override spawn(e: Environment, opts?: { taken?: boolean }): Promise<BackendInstance> {
    this.spawnCalls++;
    this.peakInflight = Math.max(this.peakInflight, ++this.inflight);
    return new Promise((resolve, reject) => {
      const id = `${e.metadata.name}-m${++this.seq}`;
      this.pending.push({
        env: e.metadata.name,
        taken: opts?.taken ?? false,
        up: () => {
          this.inflight--;
          const instance: BackendInstance = {
            id,
            address: this.address,
            specializeToken: `token-${id}`,
            environment: { namespace: e.metadata.namespace, name: e.metadata.name },
            startedAt: Date.now(),
          };
          this.alive.set(id, instance);
          resolve(instance);
        },
        fail: () => {
          this.inflight--;
          reject(new Error("loader crashed at start"));
        },
      });
    });
  }

  /** Brings up the oldest pending spawn (of `env`, when given). */
  async up(envName?: string): Promise<void> {
    const i = this.pending.findIndex((p) => envName === undefined || p.env === envName);
    const [p] = this.pending.splice(i, 1);
    if (!p) throw new Error("no pending spawn");
    p.up();
    await settle();
  }
}

const node = { namespace: "default", name: "node" };
const python = { namespace: "default", name: "python" };

describe("pool spawns through the spawn gate (manual backend)", () => {
  let backend: ManualBackend;
  let clock: FakeClock;
  let pool: Pool;

  function makePool(opts: Partial<PoolOptions> = {}): Pool {
    pool = new Pool({
      backend,
      logger: silentLogger(),
      maxFailures: 3,
      cooldownMs: 60_000,
      stableMs: 60_000,
      clock,
      spawnConcurrency: 2,
      ...opts,
    });
    return pool;
  }

  beforeEach(() => {
    backend = new ManualBackend();
    clock = new FakeClock();
  });
  afterEach(() => pool?.stop());

  /** Settles a spawnTaken promise into what happened to it. */
  function watch(p: Promise<Tracked>): { t?: Tracked; err?: FizzError } {
    const r: { t?: Tracked; err?: FizzError } = {};
    p.then(
      (t) => (r.t = t),
      (err: FizzError) => (r.err = err),
    );
    return r;
  }

  it("cold starts boot at most spawnConcurrency at once, in arrival order", async () => {
    makePool().upsert(env("node", { poolSize: 0 }));
    const r = [1, 2, 3, 4, 5].map(() => watch(pool.spawnTaken(node)));
    await settle();
    expect(backend.inflight).to.equal(2);
    expect(pool.spawnQueue()).to.deep.equal({ taken: 3, warm: 0 });
    while (backend.pending.length > 0) await backend.up();
    expect(backend.peakInflight).to.equal(2);
    expect(r.map((x) => x.t?.state)).to.deep.equal(Array(5).fill("specializing"));
    expect(r.map((x) => x.t?.instance.id)).to.deep.equal([1, 2, 3, 4, 5].map((n) => `node-m${n}`));
  });

  it("a cold start goes ahead of refills already queued", async () => {
    makePool({ spawnConcurrency: 1 }).upsert(env("node", { poolSize: 2 }));
    pool.upsert(env("python", { poolSize: 0 }));
    expect(pool.spawnQueue()).to.deep.equal({ taken: 0, warm: 1 });
    const cold = watch(pool.spawnTaken(python));
    await settle();
    await backend.up(); // node's first refill
    expect(backend.pending.map((p) => [p.env, p.taken])).to.deep.equal([["python", true]]);
    await backend.up();
    expect(cold.t?.instance.id).to.equal("python-m2");
    expect(backend.pending.map((p) => p.env)).to.deep.equal(["node"]);
  });

  it("a refill that comes up is handed to a cold start still waiting, which spawns nothing", async () => {
    makePool({ spawnConcurrency: 1 }).upsert(env("node", { poolSize: 1 }));
    const cold = watch(pool.spawnTaken(node));
    await settle();
    expect(pool.spawnQueue().taken).to.equal(1);
    await backend.up(); // the refill
    expect(cold.t?.instance.id).to.equal("node-m1");
    expect(cold.t?.state).to.equal("specializing");
    expect(pool.status(node)?.warm).to.equal(0);
    // The pool refills itself behind it; the cold start spawned nothing of its own.
    expect(backend.pending.map((p) => p.taken)).to.deep.equal([false]);
    await backend.up();
    expect(pool.status(node)).to.include({ warm: 1, starting: 0 });
  });

  it("a cold start queued past spawnQueueTimeoutMs is turned away unspawned", async () => {
    makePool({ spawnConcurrency: 1, spawnQueueTimeoutMs: 15_000 }).upsert(
      env("node", { poolSize: 0 }),
    );
    const first = watch(pool.spawnTaken(node));
    const late = watch(pool.spawnTaken(node));
    await settle();
    await clock.advance(15_000);
    await backend.up();
    expect(first.t).to.not.equal(undefined);
    expect(late.err?.code).to.equal("UNAVAILABLE");
    expect(backend.spawnCalls).to.equal(1);
  });

  it("a caller that gives up leaves the gate; its instance, once started, goes to a waiter or is killed", async () => {
    makePool({ spawnConcurrency: 1 }).upsert(env("node", { poolSize: 0 }));
    const gaveUp = new AbortController();
    const first = watch(pool.spawnTaken(node, { signal: gaveUp.signal }));
    const queued = new AbortController();
    const leaves = watch(pool.spawnTaken(node, { signal: queued.signal }));
    const waiting = watch(pool.spawnTaken(node));
    await settle();
    queued.abort();
    await settle();
    expect(leaves.err?.code).to.equal("UNAVAILABLE");
    gaveUp.abort();
    await backend.up();
    expect(first.err?.code).to.equal("UNAVAILABLE");
    // Started for a caller that gave up: handed to the cold start still waiting.
    expect(waiting.t?.instance.id).to.equal("node-m1");
    expect(backend.spawnCalls).to.equal(1);

    const alone = new AbortController();
    const last = watch(pool.spawnTaken(node, { signal: alone.signal }));
    await settle();
    alone.abort();
    await backend.up();
    expect(last.err?.code).to.equal("UNAVAILABLE");
    // Nobody waits and the pool wants none: killed, not leaked.
    expect(backend.killed.map((k) => k.id)).to.deep.equal(["node-m2"]);
  });

  it("stop rejects queued cold starts UNAVAILABLE and drops queued refills", async () => {
    makePool({ spawnConcurrency: 1 }).upsert(env("node", { poolSize: 3 }));
    const cold = watch(pool.spawnTaken(node));
    await settle();
    pool.stop();
    await settle();
    expect(cold.err?.code).to.equal("UNAVAILABLE");
    expect(pool.status(node)?.starting).to.equal(1);
    await backend.up();
    expect(pool.status(node)?.starting).to.equal(0);
    expect(backend.spawnCalls).to.equal(1);
  });
});
