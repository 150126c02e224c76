import { expect } from "chai";
import { retryUntil, RetryStopped, warnWhenSlow } from "../src/retry";
import { silentLogger } from "../src/logger";

/** A fake clock: sleeping advances it at once, so no test waits in real time. */
function fakeTime() {
  let t = 1_000;
  const waits: number[] = [];
  return {
    waits,
    now: () => t,
    sleep: (ms: number) => {
      waits.push(ms);
      t += ms;
      return Promise.resolve();
    },
  };
}

describe("retryUntil", () => {
  it("retries until the call succeeds and returns its value", async () => {
    const clock = fakeTime();
    let calls = 0;
    const v = await retryUntil(
      () => (++calls < 4 ? Promise.reject(new Error("not yet")) : Promise.resolve("ok")),
      { clock, baseMs: 100, maxMs: 1000 },
    );
    expect(v).to.equal("ok");
    expect(calls).to.equal(4);
    expect(clock.waits).to.have.length(3);
  });

  it("backs off exponentially with jitter, capped at maxMs", async () => {
    const clock = fakeTime();
    let calls = 0;
    await retryUntil(() => (++calls < 12 ? Promise.reject(new Error("down")) : Promise.resolve()), {
      clock,
      baseMs: 100,
      maxMs: 1600,
    });
    clock.waits.forEach((w, i) => {
      const ceiling = Math.min(1600, 100 * 2 ** i);
      expect(w, `wait ${i}`).to.be.within(ceiling / 2, ceiling);
    });
  });

  it("waits what waitFor says for the errors it knows, and backs off from baseMs for the rest", async () => {
    const clock = fakeTime();
    let calls = 0;
    await retryUntil(
      () =>
        ++calls < 7
          ? Promise.reject(new Error(calls <= 4 ? "no responders" : "down"))
          : Promise.resolve(),
      {
        clock,
        baseMs: 100,
        maxMs: 1600,
        waitFor: (err) => ((err as Error).message === "no responders" ? 50 : undefined),
      },
    );
    expect(clock.waits.slice(0, 4)).to.deep.equal([50, 50, 50, 50]);
    // The back-off's first wait after them is its first, not its fifth.
    expect(clock.waits[4]).to.be.within(50, 100);
    expect(clock.waits[5]).to.be.within(100, 200);
  });

  it("throws the last error once the attempts are used up", async () => {
    const clock = fakeTime();
    let calls = 0;
    const err = await retryUntil(() => Promise.reject(new Error(`fail ${++calls}`)), {
      clock,
      attempts: 3,
    }).catch((e: unknown) => e);
    expect((err as Error).message).to.equal("fail 3");
    expect(calls).to.equal(3);
  });

  it("does not retry an error that is not retryable", async () => {
    const clock = fakeTime();
    let calls = 0;
    const err = await retryUntil(
      () => {
        calls++;
        return Promise.reject(new Error("bad credentials"));
      },
      { clock, retryable: (e) => !(e as Error).message.includes("credentials") },
    ).catch((e: unknown) => e);
    expect((err as Error).message).to.equal("bad credentials");
    expect(calls).to.equal(1);
  });

  it("stops when its signal aborts, with the last error as cause", async () => {
    const abort = new AbortController();
    let calls = 0;
    const err = await retryUntil(
      () => {
        if (++calls === 2) abort.abort();
        return Promise.reject(new Error("down"));
      },
      { signal: abort.signal, baseMs: 1, maxMs: 1 },
    ).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(RetryStopped);
    expect(((err as RetryStopped).cause as Error).message).to.equal("down");
    expect(calls).to.equal(2);
  });

  it("ends a pending wait at once when stopped", async () => {
    const abort = new AbortController();
    const started = Date.now();
    const p = retryUntil(() => Promise.reject(new Error("down")), {
      signal: abort.signal,
      baseMs: 60_000,
      maxMs: 60_000,
    }).catch((e: unknown) => e);
    setImmediate(() => abort.abort());
    expect(await p).to.be.instanceOf(RetryStopped);
    expect(Date.now() - started).to.be.below(5_000);
  });

  it("tells onRetry each failure with the attempt, the wait and the time waited", async () => {
    const clock = fakeTime();
    const seen: Array<{ attempt: number; waitMs: number; elapsedMs: number }> = [];
    let calls = 0;
    await retryUntil(() => (++calls < 3 ? Promise.reject(new Error("x")) : Promise.resolve()), {
      clock,
      onRetry: ({ attempt, waitMs, elapsedMs }) => seen.push({ attempt, waitMs, elapsedMs }),
    });
    expect(seen.map((s) => s.attempt)).to.deep.equal([0, 1]);
    expect(seen[1]!.elapsedMs).to.equal(seen[0]!.waitMs);
  });
});

describe("warnWhenSlow", () => {
  function recordingLogger() {
    const lines: Array<{ level: string; msg: string }> = [];
    const base = silentLogger();
    const log = Object.assign(Object.create(base) as typeof base, {
      warn: (_o: unknown, msg: string) => lines.push({ level: "warn", msg }),
      debug: (_o: unknown, msg: string) => lines.push({ level: "debug", msg }),
    });
    return { log, lines };
  }

  it("keeps quiet while a wait is short and warns once it lasts", () => {
    const { log, lines } = recordingLogger();
    const onRetry = warnWhenSlow(log, "waiting for the registry", {}, 3_000);
    for (const elapsedMs of [0, 400, 1_200, 2_800, 3_100, 4_000, 6_200])
      onRetry({ err: new Error("x"), attempt: 0, waitMs: 100, elapsedMs });
    expect(lines.filter((l) => l.level === "warn")).to.have.length(2);
    expect(lines.slice(0, 4).every((l) => l.level === "debug")).to.equal(true);
  });
});
