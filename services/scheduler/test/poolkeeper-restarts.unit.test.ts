import { expect } from "chai";
import type { FizzError } from "@fizz/events";
import { PoolkeeperRestarts } from "../src/poolkeeper-restarts";

/** A specialization sent to a poolkeeper that died fails at once when its successor speaks. */
describe("poolkeeper restarts", () => {
  const never = () => new Promise<never>(() => undefined);
  const outcome = (p: Promise<unknown>) =>
    p.then(
      () => "resolved",
      (e: unknown) => (e as FizzError).code,
    );

  it("fails a pending specialization UNAVAILABLE when a poolkeeper never heard from speaks", async () => {
    const r = new PoolkeeperRestarts();
    r.observe("poolkeeper-old");
    const pending = outcome(r.guard(never(), "poolkeeper.specialize"));
    r.observe("poolkeeper-old");
    r.observe("poolkeeper-new");
    expect(await pending).to.equal("UNAVAILABLE");
  });

  it("leaves it alone when the first poolkeeper is heard, or one already known speaks again", async () => {
    const r = new PoolkeeperRestarts();
    let settle!: (v: string) => void;
    const pending = outcome(
      r.guard(new Promise<string>((res) => (settle = res)), "poolkeeper.specialize"),
    );
    r.observe("poolkeeper-a");
    r.observe("poolkeeper-a");
    settle("instance");
    expect(await pending).to.equal("resolved");
  });

  it("does not touch specializations started after the new poolkeeper appeared", async () => {
    const r = new PoolkeeperRestarts();
    r.observe("poolkeeper-old");
    r.observe("poolkeeper-new");
    const later = r.guard(Promise.resolve("instance"), "poolkeeper.specialize");
    expect(await later).to.equal("instance");
  });
});
