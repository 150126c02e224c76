import { expect } from "chai";
import { FizzError } from "@fizz/events";
import { loadConfig } from "../src/config";
import { trustedProxies } from "../src/front-door/trusted-proxies";

describe("gateway config", () => {
  it("has documented defaults", () => {
    const c = loadConfig({});
    expect(c).to.include({
      host: "127.0.0.1",
      port: 8080,
      opsPort: 0,
      maxBodyBytes: 16 * 1024 * 1024,
      reportIntervalMs: 1000,
      leaseTimeoutMs: 60000,
      queueTimeoutMs: 10000,
      queueMax: 1000,
      presenceIntervalMs: 2000,
      natsUrl: "nats://127.0.0.1:4222",
      subjectPrefix: "fizz.v1",
      maxConnections: 10_000,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 300_000,
      keepAliveTimeoutMs: 65_000,
      bodyIdleTimeoutMs: 30_000,
      frontend: "own",
    });
    expect(c.outboundAllow).to.deep.equal([]);
    expect(c.trustedProxies).to.deep.equal([]);
    // NATS and Redis are platform endpoints a callback may never reach.
    expect(c.platformAddresses).to.include.members(["127.0.0.1:4222", "127.0.0.1:6379"]);
  });

  it("lists the sibling services' ports as platform endpoints, and validates the outbound lists", () => {
    const c = loadConfig({
      FIZZ_REGISTRY_PORT: "18081",
      FIZZ_OUTBOUND_ALLOW: "10.1.0.0/16, hooks.example",
    });
    expect(c.outboundAllow).to.deep.equal(["10.1.0.0/16", "hooks.example"]);
    expect(c.platformAddresses).to.include.members(["127.0.0.0/8:18081", "[::1]:18081"]);
  });

  it("reads FIZZ_TRUSTED_PROXIES as addresses and CIDRs, and matches peers against them", () => {
    const c = loadConfig({ FIZZ_TRUSTED_PROXIES: " 10.0.0.0/8, 192.0.2.7 ,fd00::/8, ::1" });
    expect(c.trustedProxies).to.deep.equal(["10.0.0.0/8", "192.0.2.7", "fd00::/8", "::1"]);
    const trusted = trustedProxies(c.trustedProxies);
    for (const peer of ["10.1.2.3", "192.0.2.7", "fd00::5", "::1"])
      expect(trusted(peer), peer).to.equal(true);
    for (const peer of ["11.0.0.1", "192.0.2.8", "fe80::1", "127.0.0.1", ""])
      expect(trusted(peer), peer).to.equal(false);
    expect(trustedProxies([])("10.0.0.1")).to.equal(false);
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
      ["FIZZ_OUTBOUND_ALLOW", "10.0.0.0/40"],
      ["FIZZ_PLATFORM_ADDRESSES", "not a host!"],
      ["FIZZ_GATEWAY_MAX_CONNECTIONS", "0"],
      ["FIZZ_GATEWAY_HEADERS_TIMEOUT_MS", "10"],
      ["FIZZ_TRUSTED_PROXIES", "lb.example"],
      ["FIZZ_TRUSTED_PROXIES", "10.0.0.0/33"],
      ["FIZZ_TRUSTED_PROXIES", "fd00::/129"],
      ["FIZZ_TRUSTED_PROXIES", "10.0.0.1/x"],
      ["FIZZ_GATEWAY_FRONTEND", "nginx"],
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
