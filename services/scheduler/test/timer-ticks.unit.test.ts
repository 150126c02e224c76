import { expect } from "chai";
import { parseSchedule } from "@fizz/events";
import { planTicks, timerCallId, timerInvocation } from "../src/timers/ticks";
import { timerObj } from "./timer-fixtures";

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

describe("timer ticks (unit)", () => {
  const everySecond = parseSchedule("@every 1s");

  it("plans no firing before the next tick, and wakes up at it", () => {
    const plan = planTicks(
      everySecond,
      at("2030-01-01T00:00:05Z"),
      at("2030-01-01T00:00:05.400Z"),
      60_000,
    );
    expect(plan).to.deep.equal({ next: at("2030-01-01T00:00:06Z") });
  });

  it("fires a tick that is due, without reporting anything missed", () => {
    const plan = planTicks(
      everySecond,
      at("2030-01-01T00:00:05Z"),
      at("2030-01-01T00:00:06.003Z"),
      60_000,
    );
    expect(iso(plan.fire)).to.equal("2030-01-01T00:00:06.000Z");
    expect(iso(plan.next)).to.equal("2030-01-01T00:00:07.000Z");
    expect(plan.missed).to.equal(undefined);
  });

  it("fires only the latest of several missed ticks within the window and counts the others as missed", () => {
    const plan = planTicks(
      everySecond,
      at("2030-01-01T00:00:00Z"),
      at("2030-01-01T00:00:10.5Z"),
      60_000,
    );
    expect(iso(plan.fire)).to.equal("2030-01-01T00:00:10.000Z");
    expect(plan.missed).to.deep.equal({ first: at("2030-01-01T00:00:01Z"), count: 9 });
  });

  it("after a day without a leader, an @every 1s timer fires once and counts the day's ticks as missed", () => {
    const plan = planTicks(
      everySecond,
      at("2030-01-01T00:00:00Z"),
      at("2030-01-02T00:00:00.2Z"),
      60_000,
    );
    expect(iso(plan.fire)).to.equal("2030-01-02T00:00:00.000Z");
    expect(plan.missed).to.deep.equal({ first: at("2030-01-01T00:00:01Z"), count: 86_399 });
  });

  it("skips a missed cron tick older than the catch-up window (no firing at all)", () => {
    const hourly = parseSchedule("0 * * * *");
    const plan = planTicks(hourly, at("2030-01-01T08:00:00Z"), at("2030-01-01T10:30:00Z"), 60_000);
    expect(plan.fire).to.equal(undefined);
    expect(plan.missed).to.deep.equal({ first: at("2030-01-01T09:00:00Z"), count: "many" });
    expect(iso(plan.next)).to.equal("2030-01-01T11:00:00.000Z");
  });

  it("fires a missed cron tick exactly at the edge of the window, not one a millisecond older", () => {
    const hourly = parseSchedule("0 * * * *");
    const after = at("2030-01-01T09:30:00Z");
    expect(iso(planTicks(hourly, after, at("2030-01-01T10:01:00Z"), 60_000).fire)).to.equal(
      "2030-01-01T10:00:00.000Z",
    );
    expect(planTicks(hourly, after, at("2030-01-01T10:01:00.001Z"), 60_000).fire).to.equal(
      undefined,
    );
  });

  it("derives a readable callId from timer and tick, within the 192 characters a callId may have", () => {
    expect(timerCallId("default", "tick", at("2030-01-01T00:00:01Z"))).to.equal(
      "timer:default:tick:2030-01-01T00:00:01.000Z",
    );
    const long = "a".repeat(63);
    const id = timerCallId(long, long, at("2030-01-01T00:00:01Z"));
    expect(id.length).to.be.at.most(192);
    expect(id).to.equal(`timer:${long}:${long}:2030-01-01T00:00:01.000Z`);
    expect(timerCallId(long, long, at("2030-01-01T00:00:01Z"))).to.equal(id);
    expect(timerCallId(long, `${long.slice(1)}b`, at("2030-01-01T00:00:01Z"))).to.not.equal(id);
  });

  it("builds the invocation the function sees: method, headers, base64 body, three retries", () => {
    const t = timerObj("nightly", "@every 1s", {
      namespace: "team",
      function: "report",
      method: "PUT",
      body: '{"x":1}',
      contentType: "application/json; charset=utf-8",
    });
    const inv = timerInvocation(t, at("2030-01-01T00:00:01Z"), 42);
    expect(inv).to.deep.equal({
      callId: "timer:team:nightly:2030-01-01T00:00:01.000Z",
      namespace: "team",
      function: "report",
      source: "timer",
      trigger: "nightly",
      method: "PUT",
      path: "/",
      headers: {
        "content-type": "application/json; charset=utf-8",
        "x-fizz-timer": "nightly",
        "x-fizz-scheduled-time": "2030-01-01T00:00:01.000Z",
      },
      body: Buffer.from('{"x":1}').toString("base64"),
      maxRetries: 3,
      createdAt: 42,
    });
    expect(timerInvocation(timerObj("t", "@every 1s"), 0, 0)).to.include({
      body: "",
      method: "POST",
    });
  });
});
