import { expect } from "chai";
import { redisKeys } from "../src/redis-keys";

describe("redis keys (shared/events)", () => {
  it("names the route index sets and their marker under the prefix", () => {
    const k = redisKeys("p:");
    expect(k.routeIndex("a.example|exact|/x")).to.equal("p:routeidx:a.example|exact|/x");
    expect(k.routeIndexBuilt).to.equal("p:routeidx:built:v2");
    expect(redisKeys().routeIndexBuilt).to.equal("fizz:v1:routeidx:built:v2");
  });

  it("names the list index sorted sets per kind and their marker under the prefix", () => {
    const k = redisKeys("p:");
    expect(k.listIndex("functions")).to.equal("p:lidx:functions");
    expect(k.listIndex("httptriggers")).to.equal("p:lidx:httptriggers");
    expect(k.listIndexBuilt).to.equal("p:lidx:built:v1");
  });
});
