import { expect } from "chai";
import { checkSchedule, MAX_EVERY_MS, parseSchedule } from "../src/schedule";

const NOW = new Date("2026-12-04T12:00:00Z");

function reason(expr: string): string {
  try {
    checkSchedule(expr, NOW);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`"${expr}" was accepted`);
}

describe("schedule range (unit)", () => {
  it("accepts @every from 1s to 366 days and cron expressions that fire within five years", () => {
    for (const expr of [
      "@every 1s",
      "@every 1h30m",
      "@every 8784h",
      "*/5 * * * *",
      "0 0 29 2 *",
      "@yearly",
      "* * * * * *",
    ]) {
      expect(checkSchedule(expr, NOW).next(NOW, 1)).to.have.length(1, expr);
    }
  });

  it("refuses the @every that used to exhaust the scheduler's memory, and any over 366 days", () => {
    expect(reason("@every 99999999999h")).to.match(/at most 366 days/);
    expect(reason("@every 8785h")).to.match(/at most 366 days/);
    expect(reason(`@every ${MAX_EVERY_MS + 1}ms`)).to.match(/at most 366 days/);
  });

  it("refuses durations too long to be numbers at all, and under a second", () => {
    expect(reason(`@every ${"9".repeat(400)}h`)).to.match(/at most 366 days/);
    expect(reason("@every 999ms")).to.match(/at least 1s/);
  });

  it("refuses cron expressions that never fire", () => {
    expect(reason("0 0 30 2 *")).to.match(/never fires/);
    expect(reason("0 0 31 4 *")).to.match(/never fires/);
  });

  it("yields only valid, increasing dates even for a stored interval past the range", () => {
    // What the scheduler may still meet in the store: it must idle, never loop on NaN.
    const s = parseSchedule("@every 99999999999h");
    expect(s.next(NOW, 64)).to.deep.equal([]);
    expect(parseSchedule(`@every ${"9".repeat(400)}h`).next(NOW, 64)).to.deep.equal([]);
    const year = parseSchedule("@every 8784h").next(NOW, 3);
    expect(year.map((d) => Number.isFinite(d.getTime()))).to.deep.equal([true, true, true]);
    expect(year[1]!.getTime() - year[0]!.getTime()).to.equal(MAX_EVERY_MS);
    expect(parseSchedule("@every 1s").next(new Date(NaN), 5)).to.deep.equal([]);
  });
});
