import { expect } from "chai";
import { parseSchedule, type Invocation } from "@fizz/events";
import { silentLogger } from "@fizz/kit";
import type { TickRecord } from "../src/timers/tick-record";
import { planTicks } from "../src/timers/ticks";
import { TimerLoop } from "../src/timers/timer-loop";
import { FakeClock } from "@fizz/testkit";
import { timerObj } from "./timer-fixtures";

const noRecord: TickRecord = {
  lastFired: () => Promise.resolve(undefined),
  recordFired: () => Promise.resolve(),
  forget: () => Promise.resolve(),
};

describe("timers the scheduler cannot run (unit)", () => {
  it("plans nothing for a stored interval past the range, without walking or allocating", () => {
    const now = Date.now();
    for (const expr of ["@every 99999999999h", `@every ${"9".repeat(400)}h`]) {
      expect(planTicks(parseSchedule(expr), now - 86_400_000, now, 3_600_000), expr).to.deep.equal(
        {},
      );
    }
  });

  it("marks a timer with an out-of-range schedule failed, says why, and keeps firing the others", async () => {
    const published: Invocation[] = [];
    const clock = new FakeClock(Date.now());
    const loop = new TimerLoop({
      publish: (inv) => {
        published.push(inv);
        return Promise.resolve();
      },
      record: noRecord,
      isLeader: () => true,
      catchupMs: 60_000,
      clock,
      logger: silentLogger(),
    });
    try {
      loop.apply({ op: "put", trigger: timerObj("bomb", "@every 99999999999h") });
      loop.apply({ op: "put", trigger: timerObj("never", "0 0 30 2 *") });
      loop.apply({ op: "put", trigger: timerObj("ok", "@every 1s") });
      loop.lead();
      await clock.advance(1_000);
      expect(published).to.have.length(1);
      expect(loop.failed).to.equal(2);
      expect(loop.failureOf("default", "bomb")).to.match(/at most 366 days/);
      expect(loop.failureOf("default", "never")).to.match(/never fires/);
      expect(loop.failureOf("default", "ok")).to.equal(undefined);
      expect(published.every((i) => i.trigger === "ok")).to.equal(true);

      // Fixed through the registry: the same timer runs again.
      loop.apply({ op: "put", trigger: timerObj("bomb", "@every 1s", { revision: 2 }) });
      expect(loop.failed).to.equal(1);
      await clock.advance(1_000);
      expect(published.filter((i) => i.trigger === "bomb")).to.have.length.at.least(1);
    } finally {
      await loop.stop();
    }
  });
});
