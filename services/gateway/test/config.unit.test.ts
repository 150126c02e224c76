import { expect } from "chai";
import { FizzError } from "@fizz/events";
import { loadConfig } from "../src/config";

describe("gateway config", () => {
  it("has documented defaults", () => {
    const c = loadConfig({});
    expect(c).to.include({
      host: "127.0.0.1",
      port: 8080,
      opsPort: 0,
      maxBodyBytes: 16 * 1024 * 1024,
      reportIntervalMs: 1000,
      leaseTimeoutMs: 20000,
      queueTimeoutMs: 10000,
      queueMax: 1000,
      presenceIntervalMs: 2000,
      natsUrl: "nats://127.0.0.1:4222",
      subjectPrefix: "fizz.v1",
    });
  });

  it("names the bad variable", () => {
    for (const [name, value] of [
      ["FIZZ_GATEWAY_PORT", "http"],
      ["FIZZ_MAX_BODY_BYTES", "0"],
      ["FIZZ_REPORT_INTERVAL_MS", "-1"],
      ["FIZZ_LEASE_TIMEOUT_MS", "1.5"],
      ["FIZZ_QUEUE_TIMEOUT_MS", "-5"],
      ["FIZZ_QUEUE_MAX", "many"],
      ["FIZZ_PRESENCE_INTERVAL_MS", "0"],
    ] as const) {
      try {
        loadConfig({ [name]: value });
        expect.fail(`${name}=${value} accepted`);
      } catch (err) {
        expect(err).to.be.instanceOf(FizzError);
        expect((err as FizzError).field).to.equal(name);
        expect((err as FizzError).message).to.contain(name);
      }
    }
  });
});
