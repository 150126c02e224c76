import { silentLogger } from "@fizz/kit";
import { expect } from "chai";
import type { ExitInfo } from "../src/backend";
import type { Tracked } from "../src/instances";
import { Pool, type PoolOptions } from "../src/pool";
import { FakeBackend, env } from "./fake-backend";
import { FakeClock, settle } from "@fizz/testkit";

const ref = { namespace: "default", name: "node" };

describe("pool accounting (fake backend)", () => {
  let backend: FakeBackend;
  let clock: FakeClock;
  let pool: Pool;
  let died: Array<{ t: Tracked; info: ExitInfo }>;
  let ready: string[];

  function makePool(opts: Partial<PoolOptions> = {}): Pool {
    pool = new Pool({
      backend,
      logger: silentLogger(),
      maxFailures: 3,
      cooldownMs: 60_000,
      backoffBaseMs: 1,
      backoffMaxMs: 5,
      stableMs: 60_000,
      clock,
      onDied: (t, info) => died.push({ t, info }),
      onReady: (t) => ready.push(t.instance.id),
      ...opts,
    });
    return pool;
  }

  beforeEach(() => {
    backend = new FakeBackend();
    clock = new FakeClock();
    died = [];
    ready = [];
  });
  afterEach(() => pool?.stop());

  const warm = () => pool.status(ref)?.warm ?? -1;

  it("fills a new environment to poolSize and reports each instance ready", async () => {
    makePool().upsert(env("node", { poolSize: 3 }));
    await settle();
    expect(warm()).to.equal(3);
    expect(backend.spawnCalls).to.equal(3);
    expect(ready).to.have.length(3);
    expect(pool.counts()).to.deep.equal({ starting: 0, warm: 3, specializing: 0, specialized: 0 });
  });

  it("take hands out a warm instance without refilling; refill brings the pool back to poolSize", async () => {
    makePool().upsert(env("node", { poolSize: 2 }));
    await settle();
    expect(warm()).to.equal(2);
    const t = pool.take(ref);
    expect(t?.state).to.equal("specializing");
    await settle();
    expect(warm()).to.equal(1);
    expect(backend.spawnCalls).to.equal(2);
    pool.refill(ref);
    await settle();
    expect(warm()).to.equal(2);
    expect(backend.spawnCalls).to.equal(3);
    expect(pool.counts().specializing).to.equal(1);
  });

  it("starts the refill after a take refillAfterTakeMs later, once for several takes", async () => {
    makePool({ refillAfterTakeMs: 30 }).upsert(env("node", { poolSize: 3 }));
    await settle();
    pool.take(ref);
    pool.refillAfterTake(ref);
    pool.take(ref);
    pool.refillAfterTake(ref);
    await settle();
    expect(backend.spawnCalls).to.equal(3);
    await clock.advance(29);
    expect(backend.spawnCalls).to.equal(3);
    await clock.advance(1);
    await settle();
    expect(backend.spawnCalls).to.equal(5);
    expect(warm()).to.equal(3);
  });

  it("a deferred refill does not outlive stop() or its environment's delete", async () => {
    makePool({ refillAfterTakeMs: 30 }).upsert(env("node", { poolSize: 2 }));
    await settle();
    pool.take(ref);
    pool.refillAfterTake(ref);
    pool.remove(ref);
    await clock.advance(30);
    await settle();
    expect(backend.spawnCalls).to.equal(2);
  });

  it("refills after a take at once when refillAfterTakeMs is 0", async () => {
    makePool().upsert(env("node", { poolSize: 2 }));
    await settle();
    pool.take(ref);
    pool.refillAfterTake(ref);
    await settle();
    expect(backend.spawnCalls).to.equal(3);
  });

  it("take on an empty pool answers undefined", async () => {
    makePool().upsert(env("node", { poolSize: 0 }));
    await settle();
    expect(pool.take(ref)).to.equal(undefined);
    expect(backend.spawnCalls).to.equal(0);
  });

  it("a warm instance that dies is reported and replaced after the back-off", async () => {
    makePool().upsert(env("node", { poolSize: 2 }));
    await settle();
    expect(warm()).to.equal(2);
    const victim = [...backend.alive.keys()][0]!;
    backend.crash(victim);
    expect(died.map((d) => d.t.instance.id)).to.deep.equal([victim]);
    // It died before stableMs: a failure, so the replacement waits out the back-off.
    await settle();
    expect(warm()).to.equal(1);
    await clock.advance(5);
    expect(warm()).to.equal(2);
    expect(backend.alive.has(victim)).to.equal(false);
  });

  it("instances we kill ourselves are not reported as died", async () => {
    makePool().upsert(env("node", { poolSize: 1 }));
    await settle();
    expect(warm()).to.equal(1);
    const id = pool.list()[0]!.instance.id;
    expect(await pool.kill(id, "test")).to.equal(true);
    expect(died).to.have.length(0);
    expect(await pool.kill(id, "again")).to.equal(false);
  });

  it("stops spawning after maxFailures consecutive failures (no fork bomb) and pauses for cooldownMs", async () => {
    backend.fail = true;
    makePool().upsert(env("node", { poolSize: 3 }));
    await settle();
    expect(pool.status(ref)).to.include({ warm: 0, failures: 3, paused: true });
    // Three in parallel at first; then it backs off rather than retrying forever.
    await clock.advance(59_999);
    expect(backend.spawnCalls).to.equal(3);
    await clock.advance(1);
    expect(backend.spawnCalls).to.equal(4);
  });

  it("after the cooldown it probes one at a time and refills fully once instances stay up", async () => {
    backend.fail = true;
    makePool({ cooldownMs: 30, stableMs: 40 }).upsert(env("node", { poolSize: 3 }));
    await settle();
    expect(pool.status(ref)?.paused).to.equal(true);
    const before = backend.spawnCalls;
    backend.peakInflight = 0;
    await clock.advance(60);
    expect(backend.spawnCalls).to.equal(before + 2);
    expect(backend.peakInflight).to.equal(1);
    backend.fail = false;
    // One probe comes up; the pool fills once it has stayed up stableMs.
    await clock.advance(30);
    expect(warm()).to.equal(1);
    await clock.advance(40);
    expect(warm()).to.equal(3);
    expect(pool.status(ref)?.failures).to.equal(0);
  });

  it("counts warm instances that die right after starting as failures (crash loop after ready)", async () => {
    makePool().upsert(env("node", { poolSize: 1 }));
    for (let i = 0; i < 3; i++) {
      await clock.advance(5);
      expect(warm()).to.equal(1);
      backend.crash(pool.list()[0]!.instance.id);
    }
    expect(pool.status(ref)).to.include({ failures: 3, paused: true });
    await clock.advance(59_000);
    expect(backend.spawnCalls).to.equal(3);
  });

  it("resizes on update: kills surplus warm instances, spawns the missing ones", async () => {
    makePool().upsert(env("node", { poolSize: 3 }));
    await settle();
    expect(warm()).to.equal(3);
    pool.upsert(env("node", { poolSize: 1 }, { revision: 2 }));
    expect(warm()).to.equal(1);
    expect(backend.killed.map((k) => k.reason)).to.deep.equal(["pool resized", "pool resized"]);
    pool.upsert(env("node", { poolSize: 4 }, { revision: 3 }));
    await settle();
    expect(warm()).to.equal(4);
    expect(backend.alive.size).to.equal(4);
  });

  it("recreates warm instances when the image or command changes", async () => {
    makePool().upsert(env("node", { poolSize: 2 }));
    await settle();
    expect(warm()).to.equal(2);
    const old = new Set(backend.alive.keys());
    pool.upsert(env("node", { poolSize: 2, command: ["node", "other.mjs"] }, { revision: 2 }));
    await settle();
    expect(warm()).to.equal(2);
    expect([...backend.alive.keys()].some((id) => old.has(id))).to.equal(false);
    expect(backend.killed.every((k) => k.reason === "environment changed")).to.equal(true);
  });

  it("ignores an update older than what it knows", async () => {
    makePool().upsert(env("node", { poolSize: 2 }, { revision: 5 }));
    await settle();
    expect(warm()).to.equal(2);
    pool.upsert(env("node", { poolSize: 0 }, { revision: 4 }));
    await settle();
    expect(warm()).to.equal(2);
  });

  it("on delete kills warm instances and keeps specialized ones serving", async () => {
    makePool().upsert(env("node", { poolSize: 2 }));
    await settle();
    expect(warm()).to.equal(2);
    const t = pool.take(ref)!;
    pool.markSpecialized(t.instance.id, { namespace: "default", name: "hello", revision: 1 }, 5);
    pool.remove(ref, "uid-node");
    await settle();
    expect(pool.status(ref)).to.equal(undefined);
    expect([...backend.alive.keys()]).to.deep.equal([t.instance.id]);
    expect(pool.get(t.instance.id)?.state).to.equal("specialized");
  });

  it("kills an instance that comes up after its environment was deleted", async () => {
    makePool().upsert(env("node", { poolSize: 2 }));
    pool.remove(ref, "uid-node");
    await settle();
    expect(backend.alive.size).to.equal(0);
    expect(pool.list()).to.have.length(0);
  });

  it("gives an environment the backend cannot run no instances, and says why", async () => {
    makePool().upsert(env("node", { image: "unknown" }));
    await settle();
    expect(backend.spawnCalls).to.equal(0);
    expect(pool.environment(ref)?.unsupported).to.match(/no runtime/);
  });

  it("a listing forgets environments it lacks, unless an event touched them after it was asked for", () => {
    makePool();
    pool.beginListing();
    pool.upsert(env("fresh", { poolSize: 0 }));
    pool.replaceAll([env("node", { poolSize: 0 })]);
    expect(pool.environment({ namespace: "default", name: "fresh" })).to.not.equal(undefined);
    pool.beginListing();
    pool.replaceAll([env("node", { poolSize: 0 })]);
    expect(pool.environment({ namespace: "default", name: "fresh" })).to.equal(undefined);
  });

  it("a listing taken before a delete does not bring the environment back", () => {
    makePool();
    pool.upsert(env("node", { poolSize: 0 }));
    pool.beginListing();
    pool.remove(ref, "uid-node");
    pool.replaceAll([env("node", { poolSize: 0 })]);
    expect(pool.environment(ref)).to.equal(undefined);
  });

  it("a listing taken before a delete and re-create keeps the new incarnation", () => {
    makePool();
    pool.upsert(env("node", { poolSize: 0 }));
    pool.beginListing();
    pool.remove(ref, "uid-node");
    const again = env("node", { poolSize: 0 });
    again.metadata.uid = "uid-node-2";
    pool.upsert(again);
    pool.replaceAll([env("node", { poolSize: 0 })]);
    expect(pool.environment(ref)?.env.metadata.uid).to.equal("uid-node-2");
  });

  it("a failed listing attempt closes its window: the next listing's answer removes what it lacks", () => {
    makePool();
    pool.beginListing();
    pool.upsert(env("fresh", { poolSize: 0 }));
    pool.abortListing();
    pool.beginListing();
    pool.replaceAll([env("node", { poolSize: 0 })]);
    expect(pool.environment({ namespace: "default", name: "fresh" })).to.equal(undefined);
  });

  it("spawnTaken starts one instance outside the pool, already taken", async () => {
    makePool().upsert(env("node", { poolSize: 0 }));
    const t = await pool.spawnTaken(ref);
    expect(t.state).to.equal("specializing");
    expect(pool.status(ref)?.warm).to.equal(0);
    expect(pool.counts().specializing).to.equal(1);
  });
});
