import { expect } from "chai";
import { Counter, Registry } from "prom-client";
import { FunctionLabels, OTHER_FUNCTION } from "../src/function-labels";

async function lines(registry: Registry): Promise<string[]> {
  return (await registry.metrics())
    .split("\n")
    .filter((l) => l.startsWith("cold_total{"))
    .sort();
}

describe("bounded per-function labels", () => {
  const setup = (max: number) => {
    const registry = new Registry();
    const counter = new Counter({
      name: "cold_total",
      help: "test",
      labelNames: ["namespace", "function", "start"],
      registers: [registry],
    });
    return { registry, counter, labels: new FunctionLabels(max) };
  };

  it("folds functions past the cap into namespace and function _other", async () => {
    const { registry, counter, labels } = setup(2);
    for (const name of ["a", "b", "c", "d"])
      counter.inc(labels.of(counter, "ns", name, { start: "warm" }));
    counter.inc(labels.of(counter, "ns", "a", { start: "cold" }));
    expect(await lines(registry)).to.deep.equal([
      `cold_total{namespace="${OTHER_FUNCTION}",function="${OTHER_FUNCTION}",start="warm"} 2`,
      'cold_total{namespace="ns",function="a",start="cold"} 1',
      'cold_total{namespace="ns",function="a",start="warm"} 1',
      'cold_total{namespace="ns",function="b",start="warm"} 1',
    ]);
  });

  it("removes every series of a forgotten function and frees its place under the cap", async () => {
    const { registry, counter, labels } = setup(1);
    counter.inc(labels.of(counter, "ns", "a", { start: "warm" }));
    counter.inc(labels.of(counter, "ns", "a", { start: "cold" }));
    labels.forget("ns", "a");
    expect(await lines(registry)).to.deep.equal([]);
    counter.inc(labels.of(counter, "ns", "b", { start: "warm" }));
    expect(await lines(registry)).to.deep.equal([
      'cold_total{namespace="ns",function="b",start="warm"} 1',
    ]);
  });
});
