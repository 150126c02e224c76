import { expect } from "chai";
import { getEventListeners } from "node:events";
import { linkedSignal } from "../src/linked-signal";

describe("linkedSignal", () => {
  it("leaves nothing on a long-lived parent once released, however many operations ran", () => {
    const stop = new AbortController();
    for (let i = 0; i < 500; i++) linkedSignal([stop.signal], 60_000).release();
    expect(getEventListeners(stop.signal, "abort")).to.have.length(0);
  });

  it("aborts with the parent's reason while linked", () => {
    const stop = new AbortController();
    const op = linkedSignal([undefined, stop.signal], 60_000);
    stop.abort(new Error("stopping"));
    expect(op.signal.aborted).to.equal(true);
    expect((op.signal.reason as Error).message).to.equal("stopping");
    op.release();
  });

  it("starts aborted under a parent that already is", () => {
    const stop = new AbortController();
    stop.abort(new Error("gone"));
    const op = linkedSignal([stop.signal]);
    expect(op.signal.aborted).to.equal(true);
    expect((op.signal.reason as Error).message).to.equal("gone");
  });

  it("aborts with a TimeoutError after its timeout, as AbortSignal.timeout does", async () => {
    const op = linkedSignal([new AbortController().signal], 20);
    await new Promise<void>((resolve) => op.signal.addEventListener("abort", () => resolve()));
    expect((op.signal.reason as Error).name).to.equal("TimeoutError");
  });

  it("does not abort after release, neither by the parent nor by the timer", async () => {
    const stop = new AbortController();
    const op = linkedSignal([stop.signal], 20);
    op.release();
    await new Promise((r) => setTimeout(r, 40));
    stop.abort();
    expect(op.signal.aborted).to.equal(false);
  });
});
