import { expect } from "chai";
import { subjectsIntersect } from "../src/trigger-rules";

describe("subjectsIntersect (some subject matches both patterns)", () => {
  const cases: Array<[string, string, boolean]> = [
    ["orders.created", "orders.created", true],
    ["orders.created", "orders.deleted", false],
    ["orders.*", "orders.created", true],
    ["orders.*", "orders.created.eu", false],
    ["orders.>", "orders.created.eu", true],
    ["orders.>", "orders", false],
    [">", "fizz.v1.>", true],
    ["*.v1.lease", "fizz.v1.>", true],
    ["*.orders", "fizz.v1.>", false],
    ["fizz.v1", "fizz.v1.>", false],
    ["fizz.v1", "fizz.v1", true],
    ["fizz.*", "fizz.v1", true],
    ["fizzbuzz.>", "fizz.v1.>", false],
    ["a.*.c", "a.b.*", true],
  ];
  for (const [a, b, want] of cases) {
    it(`${a} and ${b}: ${want ? "overlap" : "disjoint"}`, () => {
      expect(subjectsIntersect(a, b)).to.equal(want);
      expect(subjectsIntersect(b, a)).to.equal(want);
    });
  }
});
