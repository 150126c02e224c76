import { expect } from "chai";
import { Registry } from "prom-client";
import { FakeClock } from "@fizz/testkit";
import { GatewayMetrics } from "../src/front-door/metrics";
import { FunctionStatsTable, OTHER } from "../src/stats/function-stats";

/** A FunctionLeases as the front door holds it: the stats object rides on it. */
const target = (namespace: string, name: string) => ({
  namespace,
  name,
  stats: undefined as import("../src/front-door/request-stats").RequestStats | undefined,
});

async function series(registry: Registry, metric: string): Promise<string[]> {
  const text = await registry.metrics();
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${metric}{`) || l.startsWith(`${metric} `))
    .sort();
}

describe("per-function metrics (gateway)", () => {
  it("folds functions past the cap into namespace/function _other, and keeps no history for them", async () => {
    const registry = new Registry();
    const clock = new FakeClock();
    const table = new FunctionStatsTable(2, clock);
    const m = new GatewayMetrics(registry, table);
    const t0 = performance.now();
    for (const name of ["a", "b", "c", "d"]) m.observe(target("ns1", name), 200, t0);
    expect(await series(registry, "fizz_function_invocations_total")).to.deep.equal([
      `fizz_function_invocations_total{namespace="${OTHER}",function="${OTHER}",trigger="http",status="2xx"} 2`,
      'fizz_function_invocations_total{namespace="ns1",function="a",trigger="http",status="2xx"} 1',
      'fizz_function_invocations_total{namespace="ns1",function="b",trigger="http",status="2xx"} 1',
    ]);
    expect(table.size).to.equal(2);
    const other = [...table.all()].find((s) => s.folded);
    expect(other?.history.buckets(clock.now())).to.deep.equal([]);
  });

  it("drops a deleted function's series, and a request after that starts it again from zero", async () => {
    const registry = new Registry();
    const table = new FunctionStatsTable(10, new FakeClock());
    const m = new GatewayMetrics(registry, table);
    const fn = target("default", "gone");
    const t0 = performance.now();
    m.observe(fn, 200, t0);
    m.observe(fn, 500, t0);
    expect(await series(registry, "fizz_function_invocations_total")).to.have.length(2);
    table.forget("default", "gone");
    expect(await series(registry, "fizz_function_invocations_total")).to.deep.equal([]);
    expect(await series(registry, "fizz_function_duration_seconds_count")).to.deep.equal([]);
    m.observe(fn, 200, t0);
    expect(await series(registry, "fizz_function_invocations_total")).to.deep.equal([
      'fizz_function_invocations_total{namespace="default",function="gone",trigger="http",status="2xx"} 1',
    ]);
  });

  it("keeps the old fizz_gateway_requests_total series (function=ns/name) next to the new ones", async () => {
    const registry = new Registry();
    const m = new GatewayMetrics(registry, new FunctionStatsTable(10, new FakeClock()));
    const t0 = performance.now();
    m.observe(target("default", "hello"), 200, t0);
    m.observe(undefined, 404, t0);
    expect(await series(registry, "fizz_gateway_requests_total")).to.deep.equal([
      'fizz_gateway_requests_total{function="default/hello",class="2xx"} 1',
      'fizz_gateway_requests_total{function="none",class="4xx"} 1',
    ]);
    expect(await series(registry, "fizz_gateway_request_duration_seconds_count")).to.deep.equal([
      'fizz_gateway_request_duration_seconds_count{function="default/hello"} 1',
      'fizz_gateway_request_duration_seconds_count{function="none"} 1',
    ]);
  });

  it("counts bus calls by trigger, with retries and dead letters, in the same table", async () => {
    const registry = new Registry();
    const table = new FunctionStatsTable(10, new FakeClock());
    new GatewayMetrics(registry, table);
    const f = table.of("default", "job");
    f.recordBus("async", 500, 0.01);
    f.busStats("async").retries++;
    f.recordBus("async", 500, 0.01);
    f.busStats("async").deadLetters++;
    f.recordBus("timer", 200, 0.01);
    expect(await series(registry, "fizz_function_invocations_total")).to.deep.equal([
      'fizz_function_invocations_total{namespace="default",function="job",trigger="async",status="5xx"} 2',
      'fizz_function_invocations_total{namespace="default",function="job",trigger="timer",status="2xx"} 1',
    ]);
    expect(await series(registry, "fizz_function_retries_total")).to.deep.equal([
      'fizz_function_retries_total{namespace="default",function="job",trigger="async"} 1',
    ]);
    expect(await series(registry, "fizz_function_dead_letters_total")).to.deep.equal([
      'fizz_function_dead_letters_total{namespace="default",function="job",trigger="async"} 1',
    ]);
  });
});
