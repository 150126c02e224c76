import { expect } from "chai";
import { drive, FakeClock, settle } from "../src/fake-clock";

describe("FakeClock (unit)", () => {
  it("fires due timers in time order, ties in creation order, each at its own time", async () => {
    const clock = new FakeClock(0);
    const fired: string[] = [];
    const note = (name: string) => () => fired.push(`${name}@${clock.now()}`);
    clock.after(30, note("c"));
    clock.after(10, note("a"));
    clock.after(20, note("b1"));
    clock.after(20, note("b2"));
    clock.after(31, note("late"));
    await clock.advance(30);
    expect(fired).to.deep.equal(["a@10", "b1@20", "b2@20", "c@30"]);
    expect(clock.t).to.equal(30);
    expect(clock.pending).to.equal(1);
    expect(clock.delays).to.deep.equal([30, 10, 20, 20, 31]);
  });

  it("settles the promise work a timer starts before firing the next", async () => {
    const clock = new FakeClock(0);
    const seen: number[] = [];
    clock.after(10, () => void clock.sleep(5).then(() => seen.push(clock.now())));
    clock.after(15, () => seen.push(-clock.now()));
    await clock.advance(20);
    // The sleep set at 10 is due at 15 too, but was created after the timer at 15.
    expect(seen).to.deep.equal([-15, 15]);
  });

  it("never fires a cancelled timer", async () => {
    const clock = new FakeClock();
    let fired = false;
    const cancel = clock.after(10, () => (fired = true));
    cancel();
    cancel(); // a second cancel is harmless
    await clock.advance(100);
    expect(fired).to.equal(false);
    expect(clock.pending).to.equal(0);
  });

  it("ends a sleep early when its signal aborts, resolving and dropping its timer", async () => {
    const clock = new FakeClock();
    const abort = new AbortController();
    let woke = false;
    const slept = clock.sleep(60_000, abort.signal).then(() => (woke = true));
    await settle();
    expect(woke).to.equal(false);
    abort.abort();
    await slept;
    expect(clock.pending).to.equal(0);
    await clock.sleep(10, abort.signal); // already aborted: at once
  });

  it("runs a contender's clock at its own rate on the same timeline", async () => {
    const clock = new FakeClock(1000);
    const slow = clock.clock(0.5);
    let firedAt: number | undefined;
    slow.after(100, () => (firedAt = clock.t));
    await clock.advance(100);
    expect(slow.now()).to.equal(1050);
    expect(firedAt).to.equal(undefined);
    await clock.advance(100);
    expect(firedAt).to.equal(1200);
    expect(slow.now()).to.equal(1100);
  });

  it("runs `each` after every timer and once at the end", async () => {
    const clock = new FakeClock(0);
    clock.after(1, () => undefined);
    clock.after(2, () => undefined);
    const at: number[] = [];
    await clock.advance(5, () => at.push(clock.t));
    expect(at).to.deep.equal([1, 2, 5]);
  });

  it("fireNext moves to the earliest timer; drive moves time only as fast as the code waits", async () => {
    const clock = new FakeClock(0);
    expect(clock.fireNext()).to.equal(false);
    const work = async () => {
      await clock.sleep(100);
      await clock.sleep(50);
      return clock.now();
    };
    expect(await drive(clock, work())).to.equal(150);
    // What is not time is awaited as is.
    expect(await drive(clock, Promise.resolve("done"))).to.equal("done");
  });
});
