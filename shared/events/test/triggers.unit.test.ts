import { expect } from "chai";
import {
  Codecs,
  FizzError,
  MessageQueueTriggerSpec,
  TimeTriggerSpec,
  WatchTriggerSpec,
  parseDuration,
  parseSchedule,
} from "@fizz/events";

describe("timer schedules", () => {
  it("accepts cron with and without seconds, nicknames and @every", () => {
    for (const ok of [
      "0 * * * *",
      "*/5 * * * * *",
      "@hourly",
      "@daily",
      "@every 30s",
      "@every 1h30m",
    ]) {
      expect(() => parseSchedule(ok), ok).to.not.throw();
    }
  });

  it("computes the same ticks for @every on every replica (aligned to the epoch)", () => {
    const s = parseSchedule("@every 30s");
    const ticks = s.next(new Date("2026-01-01T00:00:10Z"), 2).map((d) => d.toISOString());
    expect(ticks).to.deep.equal(["2026-01-01T00:00:30.000Z", "2026-01-01T00:01:00.000Z"]);
  });

  it("computes cron ticks after a given time", () => {
    const ticks = parseSchedule("0 * * * *").next(new Date("2026-01-01T00:10:00Z"), 2);
    expect(ticks.map((d) => d.toISOString())).to.deep.equal([
      "2026-01-01T01:00:00.000Z",
      "2026-01-01T02:00:00.000Z",
    ]);
  });

  it("says what is wrong with a bad expression", () => {
    expect(() => parseSchedule("bad")).to.throw(/"bad"/);
    expect(() => parseSchedule("@every 0s")).to.throw(/at least 1s/);
    expect(() => parseSchedule("* * * * * * *")).to.throw(/5 or 6 parts/);
  });

  it("parses durations", () => {
    expect(parseDuration("1h30m")).to.equal(5_400_000);
    expect(parseDuration("250ms")).to.equal(250);
    expect(parseDuration("10x")).to.equal(undefined);
  });
});

describe("trigger specs", () => {
  it("defaults a timer to POST and refuses a bad cron naming the field", () => {
    expect(TimeTriggerSpec.parse({ function: "f", cron: "@every 1m" }).method).to.equal("POST");
    const r = TimeTriggerSpec.safeParse({ function: "f", cron: "every minute" });
    expect(r.success).to.equal(false);
    expect(r.error?.issues[0]?.path).to.deep.equal(["cron"]);
  });

  it("accepts NATS wildcards in a listen subject but not in a response subject", () => {
    expect(
      MessageQueueTriggerSpec.safeParse({ function: "f", subject: "orders.*.created" }).success,
    ).to.equal(true);
    expect(
      MessageQueueTriggerSpec.safeParse({ function: "f", subject: "orders.>" }).success,
    ).to.equal(true);
    expect(
      MessageQueueTriggerSpec.safeParse({ function: "f", subject: "orders.>.x" }).success,
    ).to.equal(false);
    expect(
      MessageQueueTriggerSpec.safeParse({ function: "f", subject: "a", responseSubject: "b.*" })
        .success,
    ).to.equal(false);
  });

  it("defaults message-queue retries and refuses unknown fields", () => {
    expect(MessageQueueTriggerSpec.parse({ function: "f", subject: "a" }).maxRetries).to.equal(3);
    expect(
      MessageQueueTriggerSpec.safeParse({ function: "f", subject: "a", retries: 3 }).success,
    ).to.equal(false);
  });

  it("defaults a watch to every event type", () => {
    const w = WatchTriggerSpec.parse({
      function: "f",
      namespace: "default",
      resource: "configmaps",
    });
    expect(w.events).to.deep.equal(["ADDED", "MODIFIED", "DELETED"]);
    expect(
      WatchTriggerSpec.safeParse({ function: "f", namespace: "default", resource: "Pods!" })
        .success,
    ).to.equal(false);
  });
});

describe("invocation codec", () => {
  it("round-trips an invocation with defaults", () => {
    const inv = Codecs.invoke.decode(
      Codecs.invoke.encode(
        {
          callId: "c1",
          namespace: "default",
          function: "f",
          source: "async",
          method: "POST",
          createdAt: 1,
        },
        "gw",
      ),
    ).data;
    expect(inv).to.include({ path: "/", body: "", maxRetries: 3 });
  });

  it("refuses an invocation with a bad source", () => {
    const raw = new TextEncoder().encode(
      JSON.stringify({
        v: 1,
        type: "invoke.v1",
        sender: "x",
        ts: 1,
        data: {
          callId: "c",
          namespace: "default",
          function: "f",
          source: "email",
          method: "GET",
          createdAt: 1,
        },
      }),
    );
    expect(() => Codecs.invoke.decode(raw))
      .to.throw(FizzError)
      .with.property("field", "data.source");
  });
});
