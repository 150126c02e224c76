import { expect } from "chai";
import { FizzError, subjects } from "@fizz/events";

describe("subjects", () => {
  const s = subjects();

  it("puts every subject under the default prefix fizz.v1", () => {
    expect(s.registryGet).to.equal("fizz.v1.registry.get");
    expect(s.registryList).to.equal("fizz.v1.registry.list");
    expect(s.registryBuildReport).to.equal("fizz.v1.registry.build.report");
    expect(s.registryConfigRead).to.equal("fizz.v1.registry.config.read");
    expect(s.buildRequested).to.equal("fizz.v1.builds.requested");
    expect(s.schedulerLease).to.equal("fizz.v1.scheduler.lease");
    expect(s.schedulerReport).to.equal("fizz.v1.scheduler.report");
    expect(s.poolkeeperSpecialize).to.equal("fizz.v1.poolkeeper.specialize");
    expect(s.poolkeeperRetire).to.equal("fizz.v1.poolkeeper.retire");
    expect(s.poolkeeperList).to.equal("fizz.v1.poolkeeper.list");
    expect(s.gatewaySync).to.equal("fizz.v1.gateway.sync");
    expect(s.gatewayPresence).to.equal("fizz.v1.gateway.presence");
  });

  it("builds per-kind change subjects and a wildcard that matches them", () => {
    expect(s.registryChanged("functions")).to.equal("fizz.v1.registry.changed.functions");
    expect(s.registryChangedAll).to.equal("fizz.v1.registry.changed.*");
  });

  it("builds per-function subjects from namespace and name", () => {
    expect(s.schedulerInstances("default", "hello")).to.equal(
      "fizz.v1.scheduler.instances.default.hello",
    );
    expect(s.invoke("team-a", "resize")).to.equal("fizz.v1.invoke.team-a.resize");
    expect(s.dead("default", "hello")).to.equal("fizz.v1.dead.default.hello");
    expect(s.logs("default", "hello")).to.equal("fizz.v1.logs.default.hello");
    expect(s.schedulerInstancesAll).to.equal("fizz.v1.scheduler.instances.*.*");
  });

  it("builds instance event subjects", () => {
    expect(s.poolkeeperInstance("died")).to.equal("fizz.v1.poolkeeper.instance.died");
    expect(s.poolkeeperInstanceAll).to.equal("fizz.v1.poolkeeper.instance.*");
  });

  it("honours a custom prefix", () => {
    expect(subjects("acme.fizz").schedulerLease).to.equal("acme.fizz.scheduler.lease");
  });

  it("refuses a prefix with wildcards or empty tokens", () => {
    for (const bad of ["a.*", "a..b", "a.>", "", "a b"]) {
      expect(() => subjects(bad), bad)
        .to.throw(FizzError)
        .with.property("field", "prefix");
    }
  });

  it("refuses names that would widen a subscription or hop subjects", () => {
    for (const bad of ["a.b", "*", ">", "Hello", "", "a b"]) {
      const err = (() => {
        try {
          s.invoke("default", bad);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err, bad).to.be.instanceOf(FizzError);
      expect((err as FizzError).code).to.equal("INVALID_NAME");
      expect((err as FizzError).field).to.equal("function");
    }
    expect(() => s.logs("Not.Valid", "hello")).to.throw(/namespace/);
  });
});
