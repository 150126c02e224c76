import { expect } from "chai";
import { FizzError } from "@fizz/events";
import { loadConfig } from "../src/config";

describe("scheduler config (unit)", () => {
  it("uses the documented defaults", () => {
    const c = loadConfig({});
    expect(c).to.include({
      host: "127.0.0.1",
      port: 0,
      loadFailureTtlMs: 5000,
      drainMs: 2000,
      reapIntervalMs: 1000,
      specializeTimeoutMs: 45_000,
      rpcTimeoutMs: 5000,
      reconcileIntervalMs: 30_000,
      claimTtlMs: 50_000,
      claimPollMs: 50,
      minInstancesRetryMs: 5000,
      timerLeaseMs: 10_000,
      timerCatchupMs: 60_000,
      redisPrefix: "fizz:v1:",
      subjectPrefix: "fizz.v1",
    });
  });

  it("reads the timing variables", () => {
    const c = loadConfig({
      FIZZ_DRAIN_MS: "0",
      FIZZ_REAP_INTERVAL_MS: "50",
      FIZZ_SCHEDULER_PORT: "9102",
    });
    expect(c).to.include({ drainMs: 0, reapIntervalMs: 50, port: 9102 });
  });

  it("names the variable that is wrong", () => {
    try {
      loadConfig({ FIZZ_SPECIALIZE_TIMEOUT_MS: "soon" });
      expect.fail("expected an error");
    } catch (err) {
      expect(err).to.be.instanceOf(FizzError);
      expect((err as FizzError).field).to.equal("FIZZ_SPECIALIZE_TIMEOUT_MS");
      expect((err as FizzError).message).to.match(
        /^FIZZ_SPECIALIZE_TIMEOUT_MS: must be an integer/,
      );
    }
  });
  it("keeps the claim TTL longer than a specialization may take", () => {
    expect(loadConfig({ FIZZ_SPECIALIZE_TIMEOUT_MS: "60000" }).claimTtlMs).to.equal(65_000);
    expect(
      loadConfig({ FIZZ_SPECIALIZE_TIMEOUT_MS: "400", FIZZ_CLAIM_TTL_MS: "1000" }).claimTtlMs,
    ).to.equal(1000);
    try {
      loadConfig({ FIZZ_CLAIM_TTL_MS: "10000" });
      expect.fail("expected an error");
    } catch (err) {
      expect(err).to.be.instanceOf(FizzError);
      expect((err as FizzError).field).to.equal("FIZZ_CLAIM_TTL_MS");
      expect((err as FizzError).message).to.match(
        /^FIZZ_CLAIM_TTL_MS: must be greater than FIZZ_SPECIALIZE_TIMEOUT_MS \(45000\)/,
      );
    }
  });

  it("reads the timer variables, and keeps the catch-up inside the stream's duplicate window", () => {
    expect(loadConfig({ FIZZ_TIMER_LEASE_MS: "900", FIZZ_TIMER_CATCHUP_MS: "120000" })).to.include({
      timerLeaseMs: 900,
      timerCatchupMs: 120_000,
    });
    expect(() => loadConfig({ FIZZ_TIMER_LEASE_MS: "10" })).to.throw(/^FIZZ_TIMER_LEASE_MS: /);
    try {
      loadConfig({ FIZZ_TIMER_CATCHUP_MS: "300000" });
      expect.fail("expected an error");
    } catch (err) {
      expect(err).to.be.instanceOf(FizzError);
      expect((err as FizzError).field).to.equal("FIZZ_TIMER_CATCHUP_MS");
      expect((err as FizzError).message).to.match(
        /^FIZZ_TIMER_CATCHUP_MS: must be at most 120000 \(the invocation stream's duplicate window\)/,
      );
    }
  });
});
