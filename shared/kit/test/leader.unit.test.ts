import { expect } from "chai";
import { pino } from "pino";
import { LeaderElection } from "../src/leader";
import { silentLogger } from "../src/logger";
import { FakeClock } from "@fizz/testkit";
import { MemoryLock } from "./memory-lock";

const TTL = 10_000;

interface Contender {
  election: LeaderElection;
  events: string[];
}

interface LogLine {
  level: number;
  msg: string;
  err?: string;
}

interface Callbacks {
  /** Runs after the event is recorded; may throw. */
  onElected?: () => void;
  onDeposed?: (reason: string) => void;
  logs?: LogLine[];
}

describe("LeaderElection (unit: memory lock, fake clock)", () => {
  let time: FakeClock;
  let lock: MemoryLock;
  let contenders: Contender[];

  const contender = (id: string, rate = 1, cb: Callbacks = {}): Contender => {
    const events: string[] = [];
    const logs = cb.logs;
    const election = new LeaderElection({
      lock: lock.for(id),
      id,
      ttlMs: TTL,
      logger: logs
        ? pino(
            { level: "debug" },
            { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) },
          )
        : silentLogger(),
      clock: time.clock(rate),
      onElected: () => {
        events.push("elected");
        cb.onElected?.();
      },
      onDeposed: (reason) => {
        events.push(`deposed: ${reason}`);
        cb.onDeposed?.(reason);
      },
    });
    const c = { election, events };
    contenders.push(c);
    return c;
  };
  const leaders = () => contenders.filter((c) => c.election.isLeader()).length;
  const atMostOneLeader = () => expect(leaders(), "leaders at once").to.be.at.most(1);

  beforeEach(() => {
    time = new FakeClock();
    lock = new MemoryLock(time, TTL);
    contenders = [];
  });
  afterEach(async () => {
    // A cut-off contender's release times out on the fake clock, so time moves while they stop.
    const stopped = Promise.all(contenders.map((c) => c.election.stop()));
    await time.advance(TTL);
    await stopped;
  });

  it("of two contenders, exactly one leads, and keeps leading while it renews", async () => {
    const a = contender("a");
    const b = contender("b");
    await a.election.start();
    await b.election.start();
    await time.advance(10 * TTL, atMostOneLeader);
    expect(a.election.isLeader()).to.equal(true);
    expect(b.election.isLeader()).to.equal(false);
    expect(a.events).to.deep.equal(["elected"]);
    expect(b.events).to.deep.equal([]);
    expect(lock.holder).to.equal("a");
  });

  it("a graceful stop steps down, then releases the key: the follower takes over within ttl/4", async () => {
    const a = contender("a");
    const b = contender("b");
    await a.election.start();
    await b.election.start();
    await time.advance(TTL);
    await a.election.stop();
    expect(a.events).to.deep.equal(["elected", "deposed: stopping"]);
    expect(lock.holder).to.equal(undefined);
    await time.advance(TTL / 4);
    expect(b.election.isLeader()).to.equal(true);
  });

  it("when its connection stops answering, the leader steps down at 4/5 of the ttl, before the key can expire", async () => {
    const a = contender("a");
    await a.election.start();
    await time.advance(1);
    expect(a.election.isLeader()).to.equal(true);
    await time.advance(TTL / 4); // a renewal, sent 1 ms ago
    lock.cut("a");
    const lastWrite = time.t - 1;
    let steppedDownAt: number | undefined;
    await time.advance(TTL, () => {
      if (steppedDownAt === undefined && !a.election.isLeader()) steppedDownAt = time.t;
    });
    expect(steppedDownAt).to.be.at.most(lastWrite + TTL * 0.8);
    expect(a.events).to.deep.equal(["elected", "deposed: the lock could not be renewed in time"]);
  });

  for (const rate of [1, 0.9]) {
    it(`a follower takes over within ttl + ttl/4 of a cut-off leader's last renewal, after the leader stepped down (leader's clock rate ${rate})`, async () => {
      const a = contender("a", rate);
      const b = contender("b");
      await a.election.start();
      await time.advance(1);
      await b.election.start();
      await time.advance(TTL, atMostOneLeader);
      const calls = lock.calls;
      lock.cut("a");
      // The last write a's connection delivered: its last renewal, at most ttl/4 (a's time) ago.
      const renewedBy = time.t;
      const order: string[] = [];
      let takeover = 0;
      await time.advance(2 * TTL, () => {
        atMostOneLeader();
        if (!a.election.isLeader() && !order.includes("a down")) order.push("a down");
        if (b.election.isLeader() && !order.includes("b up")) {
          order.push("b up");
          takeover = time.t;
        }
      });
      expect(order).to.deep.equal(["a down", "b up"]);
      expect(takeover - renewedBy).to.be.at.most(TTL + TTL / 4);
      expect(b.events).to.deep.equal(["elected"]);
      expect(lock.calls).to.be.above(calls);
      expect(lock.holder).to.equal("b");
    });
  }

  it("keeps leading through a renewal that answers too late: the write is recognised as its own", async () => {
    const a = contender("a");
    await a.election.start();
    await time.advance(1);
    lock.lateBy = TTL; // stored at once, answered after the timeout
    await time.advance(TTL / 4 + 1);
    lock.lateBy = 0;
    await time.advance(TTL * 2);
    expect(a.election.isLeader()).to.equal(true);
    expect(a.events).to.deep.equal(["elected"]);
  });

  it("steps down at once when someone else writes the key", async () => {
    const a = contender("a");
    await a.election.start();
    await time.advance(1);
    lock.steal("intruder");
    await time.advance(TTL / 4 + 1);
    expect(a.election.isLeader()).to.equal(false);
    expect(a.events).to.deep.equal(["elected", "deposed: another contender holds the lock"]);
  });

  it("a follower's stop releases nothing and reports no step-down", async () => {
    const a = contender("a");
    const b = contender("b");
    await a.election.start();
    await b.election.start();
    await time.advance(1);
    await b.election.stop();
    expect(b.events).to.deep.equal([]);
    expect(lock.holder).to.equal("a");
  });

  describe("callbacks that throw", () => {
    const ERROR = 50;
    let escaped: unknown[];
    const onEscape = (err: unknown) => void escaped.push(err);
    beforeEach(() => {
      escaped = [];
      process.on("unhandledRejection", onEscape);
      process.on("uncaughtException", onEscape);
    });
    afterEach(() => {
      process.off("unhandledRejection", onEscape);
      process.off("uncaughtException", onEscape);
      expect(escaped, "errors that escaped the election").to.deep.equal([]);
    });
    const errors = (logs: LogLine[]) =>
      logs.filter((l) => l.level >= ERROR).map((l) => `${l.msg}: ${l.err}`);

    it("onElected throwing is logged; the contender steps down, releases the key and a follower takes over", async () => {
      const logs: LogLine[] = [];
      const a = contender("a", 1, {
        logs,
        onElected: () => {
          throw new Error("informers would not start");
        },
      });
      const b = contender("b");
      await a.election.start();
      await time.advance(1);
      expect(a.election.isLeader()).to.equal(false);
      expect(a.events).to.deep.equal(["elected", "deposed: onElected failed"]);
      expect(errors(logs)).to.deep.equal([
        "onElected failed; stepping down: informers would not start",
      ]);
      expect(lock.holder, "released for another replica").to.equal(undefined);
      await b.election.start();
      await time.advance(TTL, atMostOneLeader);
      expect(b.election.isLeader()).to.equal(true);
      expect(b.events).to.deep.equal(["elected"]);
      expect(a.election.isLeader()).to.equal(false);
    });

    it("onElected throwing once: the contender keeps contending and leads at a later poll", async () => {
      const logs: LogLine[] = [];
      let failures = 1;
      const a = contender("a", 1, {
        logs,
        onElected: () => {
          if (failures-- > 0) throw new Error("not yet");
        },
      });
      await a.election.start();
      await time.advance(TTL / 4 + 1);
      expect(a.election.isLeader()).to.equal(true);
      expect(a.events).to.deep.equal(["elected", "deposed: onElected failed", "elected"]);
      await time.advance(2 * TTL);
      expect(a.election.isLeader()).to.equal(true);
      expect(errors(logs)).to.have.length(1);
    });

    it("onElected always throwing: the contender backs off longer after each failure instead of flapping every poll", async () => {
      const E = TTL / 4; // the poll interval
      const electedAt: number[] = [];
      const a = contender("a", 1, {
        onElected: () => {
          electedAt.push(time.t);
          throw new Error("informers would not start");
        },
      });
      await a.election.start();
      await time.advance(40 * E, () => expect(a.election.isLeader()).to.equal(false));
      const gaps = electedAt.slice(1).map((t, i) => t - electedAt[i]!);
      // Flapping would elect it 40 times, once a poll; the back-off doubles up to a minute.
      expect(electedAt.length, `elected at ${gaps.join(", ")} ms apart`).to.be.within(6, 7);
      gaps.forEach((gap, i) =>
        expect(gap, `gap ${i + 1}`).to.be.at.least(Math.max(E, Math.min(E * 2 ** (i - 1), 30_000))),
      );
      expect(lock.holder, "released after every failure").to.equal(undefined);
    });

    it("the back-off starts over once onElected succeeded", async () => {
      const E = TTL / 4;
      const outcomes = [false, false, false, true, false, true];
      const electedAt: number[] = [];
      const a = contender("a", 1, {
        onElected: () => {
          electedAt.push(time.t);
          if (!outcomes.shift()) throw new Error("not yet");
        },
      });
      await a.election.start();
      await time.advance(20 * E);
      expect(a.election.isLeader()).to.equal(true);
      expect(electedAt).to.have.length(4);
      lock.steal("intruder"); // deposes it; the intruder's key expires after the ttl
      await time.advance(TTL + 2 * E);
      expect(electedAt).to.have.length(6);
      expect(a.election.isLeader()).to.equal(true);
      // The failure after the success waited one poll, not the fourth failure's 4 to 8 polls.
      expect(electedAt[5]! - electedAt[4]!).to.equal(E);
    });

    it("onDeposed throwing from the watchdog is logged, and leadership ends all the same", async () => {
      const logs: LogLine[] = [];
      const a = contender("a", 1, {
        logs,
        onDeposed: () => {
          throw new Error("informers would not stop");
        },
      });
      await a.election.start();
      await time.advance(1);
      expect(a.election.isLeader()).to.equal(true);
      lock.cut("a");
      await time.advance(TTL);
      expect(a.election.isLeader()).to.equal(false);
      expect(a.events).to.deep.equal(["elected", "deposed: the lock could not be renewed in time"]);
      expect(errors(logs)).to.deep.equal(["onDeposed failed: informers would not stop"]);
    });

    it("onDeposed throwing on a conflict or a stop is logged; stop() still releases the key", async () => {
      const logs: LogLine[] = [];
      const a = contender("a", 1, {
        logs,
        onDeposed: () => {
          throw new Error("boom");
        },
      });
      await a.election.start();
      await time.advance(1);
      lock.steal("intruder");
      await time.advance(TTL / 4 + 1);
      expect(a.election.isLeader()).to.equal(false);
      expect(errors(logs)).to.deep.equal(["onDeposed failed: boom"]);

      const b = contender("b", 1, {
        logs,
        onDeposed: () => {
          throw new Error("boom");
        },
      });
      await b.election.start();
      await time.advance(TTL); // the intruder's key expires; a or b takes it
      const leader = [a, b].find((c) => c.election.isLeader())!;
      expect(leader, "a leader after the intruder's key expired").to.not.equal(undefined);
      await leader.election.stop();
      expect(leader.election.isLeader()).to.equal(false);
      expect(lock.holder, "the key was released").to.equal(undefined);
      expect(errors(logs)).to.deep.equal(["onDeposed failed: boom", "onDeposed failed: boom"]);
    });
  });
});
