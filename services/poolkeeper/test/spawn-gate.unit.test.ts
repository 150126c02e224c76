import type { FizzError } from "@fizz/events";
import { expect } from "chai";
import { SpawnGate, type SpawnPriority, type SpawnWaiter } from "../src/spawn-gate";

/** A waiter that records what happened to it, and keeps its release for the test to call. */
interface Probe {
  name: string;
  release?: () => void;
  handed?: string;
  rejected?: FizzError;
  cancel: () => boolean;
}

describe("spawn gate (order, priority, width, cancellation, stop)", () => {
  let now: number;
  let gate: SpawnGate<string>;
  let admitted: string[];

  beforeEach(() => {
    now = 1000;
    admitted = [];
    gate = new SpawnGate<string>({ width: 2, now: () => now });
  });

  function enter(
    name: string,
    priority: SpawnPriority,
    extra: Partial<Pick<SpawnWaiter<string>, "key" | "deadline" | "signal">> = {},
  ): Probe {
    const p: Probe = { name, cancel: () => false };
    p.cancel = gate.enter({
      priority,
      key: extra.key ?? "default/node",
      ...(extra.deadline !== undefined ? { deadline: extra.deadline } : {}),
      ...(extra.signal ? { signal: extra.signal } : {}),
      admit: (release) => {
        admitted.push(name);
        p.release = release;
      },
      handOff: (value) => (p.handed = value),
      reject: (err) => (p.rejected = err),
    });
    return p;
  }

  it("admits up to its width at once, synchronously, and the rest in arrival order", () => {
    const [a, b, c, d] = ["a", "b", "c", "d"].map((n) => enter(n, "warm"));
    expect(admitted).to.deep.equal(["a", "b"]);
    expect(gate.running).to.equal(2);
    expect(gate.waiting).to.deep.equal({ taken: 0, warm: 2 });
    a?.release?.();
    expect(admitted).to.deep.equal(["a", "b", "c"]);
    b?.release?.();
    c?.release?.();
    expect(admitted).to.deep.equal(["a", "b", "c", "d"]);
    d?.release?.();
    expect(gate.running).to.equal(0);
  });

  it("a release called twice frees one slot only", () => {
    const a = enter("a", "warm");
    enter("b", "warm");
    enter("c", "warm");
    enter("d", "warm");
    a.release?.();
    a.release?.();
    expect(admitted).to.deep.equal(["a", "b", "c"]);
    expect(gate.running).to.equal(2);
  });

  it("cold starts go ahead of queued refills, in their own arrival order", () => {
    const a = enter("a", "warm");
    const b = enter("b", "warm");
    enter("r1", "warm");
    enter("c1", "taken");
    enter("c2", "taken");
    a.release?.();
    b.release?.();
    expect(admitted).to.deep.equal(["a", "b", "c1", "c2"]);
  });

  it("a cold start does not jump a free slot's queue: with nobody waiting it is admitted at once", () => {
    enter("a", "warm");
    const c = enter("c", "taken");
    expect(admitted).to.deep.equal(["a", "c"]);
    expect(c.release).to.be.a("function");
  });

  it("width 0 (or Infinity) admits everything at once", () => {
    gate = new SpawnGate<string>({ width: 0, now: () => now });
    for (let i = 0; i < 50; i++) enter(`w${i}`, i % 2 ? "warm" : "taken");
    expect(admitted).to.have.length(50);
    expect(gate.waiting).to.deep.equal({ taken: 0, warm: 0 });
  });

  it("hands a value to the oldest cold-start waiter of the same environment, not to others", () => {
    enter("a", "warm");
    enter("b", "warm");
    const other = enter("other", "taken", { key: "default/python" });
    const first = enter("first", "taken");
    const second = enter("second", "taken");
    const refill = enter("refill", "warm");
    expect(gate.handOff("default/node", "inst-1")).to.equal(true);
    expect(first.handed).to.equal("inst-1");
    expect(second.handed).to.equal(undefined);
    expect(other.handed).to.equal(undefined);
    expect(refill.handed).to.equal(undefined);
    expect(gate.waiting).to.deep.equal({ taken: 2, warm: 1 });
    expect(gate.handOff("default/go", "inst-2")).to.equal(false);
    // A hand-off takes no slot: the running count is unchanged.
    expect(gate.running).to.equal(2);
  });

  it("cancel takes a queued waiter out without calling it; an admitted one is not cancellable", () => {
    const a = enter("a", "warm");
    enter("b", "warm");
    const c = enter("c", "taken");
    enter("d", "taken");
    expect(c.cancel()).to.equal(true);
    expect(c.cancel()).to.equal(false);
    expect(a.cancel()).to.equal(false);
    a.release?.();
    expect(admitted).to.deep.equal(["a", "b", "d"]);
    expect(c.rejected).to.equal(undefined);
  });

  it("an aborted signal takes the waiter out at once and rejects it UNAVAILABLE", () => {
    enter("a", "warm");
    const b = enter("b", "warm");
    const ac = new AbortController();
    const c = enter("c", "taken", { signal: ac.signal });
    ac.abort(new Error("scheduler timed out"));
    expect(c.rejected?.code).to.equal("UNAVAILABLE");
    expect(gate.waiting.taken).to.equal(0);
    b.release?.();
    expect(admitted).to.deep.equal(["a", "b"]);

    const late = new AbortController();
    late.abort();
    const d = enter("d", "taken", { signal: late.signal });
    expect(d.rejected?.code).to.equal("UNAVAILABLE");
  });

  it("a waiter past its deadline is turned away when it reaches the front, not by a timer", () => {
    const a = enter("a", "warm");
    enter("b", "warm");
    const late = enter("late", "taken", { deadline: 2000 });
    const ok = enter("ok", "taken", { deadline: 9000 });
    now = 2500;
    expect(late.rejected).to.equal(undefined);
    // Nor is it handed anything: the next live waiter is.
    expect(gate.handOff("default/node", "inst")).to.equal(true);
    expect(ok.handed).to.equal("inst");
    a.release?.();
    expect(late.rejected?.code).to.equal("UNAVAILABLE");
    expect(late.rejected?.retryable).to.equal(true);
    expect(admitted).to.deep.equal(["a", "b"]);
    expect(gate.running).to.equal(1);
  });

  it("stop rejects every waiter and later entries UNAVAILABLE; admitted spawns release normally", () => {
    const a = enter("a", "warm");
    enter("b", "warm");
    const c = enter("c", "taken");
    const d = enter("d", "warm");
    gate.stop();
    expect(c.rejected?.code).to.equal("UNAVAILABLE");
    expect(d.rejected?.code).to.equal("UNAVAILABLE");
    expect(gate.waiting).to.deep.equal({ taken: 0, warm: 0 });
    const e = enter("e", "taken");
    expect(e.rejected?.code).to.equal("UNAVAILABLE");
    a.release?.();
    expect(gate.running).to.equal(1);
    expect(admitted).to.deep.equal(["a", "b"]);
  });
});
