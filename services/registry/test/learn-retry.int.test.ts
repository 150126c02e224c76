import { expect } from "chai";
import { Redis } from "ioredis";
import { waitFor } from "@fizz/testkit";
import { learnStored } from "../src/store-page";
import { KnownJson } from "../src/store-parse";
import { learnFixture } from "./learn-fixture";

/**
 * Pre-learning after start (store-page.ts learnStored) meets Redis errors: a reconnect, a failover,
 * a restart of Redis while the registry starts. One failed step must not end it for good (the
 * first listing would then check every object on its own time until the next restart): it tries
 * the step again after a back-off, from where it was, and gives up only after a bounded number of
 * failures in a row. Failures here are real: the learner's connection is killed by Redis (CLIENT
 * KILL), and commands on a connection that is down fail at once (no offline queue).
 */
describe("registry store: pre-learning through Redis errors", () => {
  const PREFIX = "learn-retry-test:";
  const COUNT = 120;
  // Back-offs of 20, 40, 80, 160, 200 ms: longer in all than the learner takes to reconnect.
  const PACE = { step: 17, share: 0.5, retry: { baseMs: 20, maxMs: 200, attempts: 6 } };
  const f = learnFixture({ prefix: PREFIX, count: COUNT, store: "learn-retry-test" });
  let learner: Redis;
  let learnerId: number;

  beforeEach(async () => {
    learner = new Redis(f.redis.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => 100,
    });
    await waitFor(() => learner.status === "ready", { what: "learner connected" });
    learnerId = await learner.client("ID");
  });
  afterEach(() => learner.disconnect());

  /** Redis drops the learner's connection; answers once the client has seen it go. */
  const killLearner = async () => {
    await f.client.client("KILL", "ID", String(learnerId));
    await waitFor(() => learner.status !== "ready", { what: "learner disconnected" });
  };

  it("tries a failed step again after a back-off and learns every object", async () => {
    const known = new KnownJson();
    let failedFirst = false;
    await killLearner();
    const learnt = await learnStored(
      learner,
      PREFIX,
      ["environments"],
      (k, objKey, raw) => known.learn(k, objKey, raw),
      new AbortController().signal,
      PACE,
      () => (failedFirst = true),
    );
    expect(failedFirst).to.equal(true);
    expect(learnt).to.equal(COUNT);
    expect((await f.page(known)).checked).to.equal(0);
  });

  it("continues from the step that failed, not from the start", async () => {
    const known = new KnownJson();
    const seen = new Map<string, number>();
    let killed = false;
    let retries = 0;
    const learnt = await learnStored(
      learner,
      PREFIX,
      ["environments"],
      (k, objKey, raw) => {
        seen.set(objKey, (seen.get(objKey) ?? 0) + 1);
        // After the first step's objects the learner has Redis drop its own connection: sent on
        // that connection before the next step's reads, so Redis closes it before reading them.
        if (seen.size === PACE.step && !killed) {
          killed = true;
          learner.client("KILL", "ID", String(learnerId), "SKIPME", "no").catch(() => undefined);
        }
        return known.learn(k, objKey, raw);
      },
      new AbortController().signal,
      PACE,
      () => retries++,
    );
    expect(killed).to.equal(true);
    expect(retries).to.be.at.least(1);
    expect(learnt).to.equal(COUNT);
    expect([...seen.values()].every((n) => n === 1)).to.equal(true);
  });

  it("gives up after a bounded number of failures in a row", async () => {
    const known = new KnownJson();
    let retries = 0;
    learner.disconnect(); // and it stays down: every attempt fails
    const t0 = performance.now();
    const err = await learnStored(
      learner,
      PREFIX,
      ["environments"],
      (k, objKey, raw) => known.learn(k, objKey, raw),
      new AbortController().signal,
      PACE,
      () => retries++,
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(Error);
    expect(retries).to.equal(PACE.retry.attempts - 1);
    // Backed off between attempts: 20 + 40 + 80 + 160 + 200 ms.
    expect(performance.now() - t0).to.be.at.least(450);
  });

  it("stops waiting when its signal aborts during a back-off", async () => {
    const ctl = new AbortController();
    learner.disconnect();
    const running = learnStored(
      learner,
      PREFIX,
      ["environments"],
      () => true,
      ctl.signal,
      { ...PACE, retry: { baseMs: 60_000, maxMs: 60_000, attempts: 5 } },
      () => ctl.abort(),
    );
    const t0 = performance.now();
    expect(await running).to.equal(0);
    expect(performance.now() - t0).to.be.below(5_000);
  });
});
