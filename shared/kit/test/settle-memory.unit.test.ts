import { expect } from "chai";
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { HEAP_GROWTH_MIN_BYTES, HEAP_GROWTH_SHARE, HeapKeeper } from "../src/settle-memory";

const MB = 1024 * 1024;

function fakeHeap(start: number, minIntervalMs = 0) {
  const heap = { used: start, calls: 0, now: 0, done: undefined as (() => void) | undefined };
  const keeper = new HeapKeeper({
    oldGenerationBytes: () => heap.used,
    collect: () => {
      heap.calls++;
      return new Promise<void>((resolve) => (heap.done = resolve));
    },
    now: () => heap.now,
    minIntervalMs,
  });
  return { heap, keeper };
}

const settle = () => new Promise((r) => setImmediate(r));

describe("HeapKeeper", () => {
  it("collects once the old generation has grown past the floor by the minimum", async () => {
    const { heap, keeper } = fakeHeap(8 * MB);
    keeper.check();
    heap.used += HEAP_GROWTH_MIN_BYTES - 1;
    keeper.check();
    expect(heap.calls).to.equal(0);
    heap.used += 1;
    keeper.check();
    expect(heap.calls).to.equal(1);
    // The floor is what the collection left: growth is counted from there.
    heap.used = 9 * MB;
    heap.done!();
    await settle();
    heap.used = 9 * MB + HEAP_GROWTH_MIN_BYTES - 1;
    keeper.check();
    expect(heap.calls).to.equal(1);
  });

  it("sets off no second collection while one is running", () => {
    const { heap, keeper } = fakeHeap(8 * MB);
    keeper.check();
    heap.used += 2 * HEAP_GROWTH_MIN_BYTES;
    keeper.check();
    heap.used += 2 * HEAP_GROWTH_MIN_BYTES;
    keeper.check();
    expect(heap.calls).to.equal(1);
  });

  it("sets off at most one collection per interval, however fast the heap grows", async () => {
    const { heap, keeper } = fakeHeap(8 * MB, 30_000);
    keeper.check();
    heap.used += HEAP_GROWTH_MIN_BYTES;
    keeper.check();
    heap.done!();
    await settle();
    heap.now = 29_999;
    heap.used += 2 * HEAP_GROWTH_MIN_BYTES;
    keeper.check();
    expect(heap.calls).to.equal(1);
    heap.now = 30_000;
    keeper.check();
    expect(heap.calls).to.equal(2);
  });

  it("counts growth from what V8's own full collection left", () => {
    const { heap, keeper } = fakeHeap(30 * MB);
    keeper.check();
    heap.used = 8 * MB;
    keeper.afterFullCollection();
    heap.used = 8 * MB + HEAP_GROWTH_MIN_BYTES - 1;
    keeper.check();
    expect(heap.calls).to.equal(0);
    heap.used = 8 * MB + HEAP_GROWTH_MIN_BYTES;
    keeper.check();
    expect(heap.calls).to.equal(1);
  });

  it("lets a large live set grow by its share before collecting", () => {
    const { heap, keeper } = fakeHeap(100 * MB);
    keeper.check();
    heap.used = 100 * MB + 100 * MB * HEAP_GROWTH_SHARE - 1;
    keeper.check();
    expect(heap.calls).to.equal(0);
    heap.used += 1;
    keeper.check();
    expect(heap.calls).to.equal(1);
  });

  it("keeps checking after a collection that failed", async () => {
    let calls = 0;
    let used = 8 * MB;
    const keeper = new HeapKeeper({
      oldGenerationBytes: () => used,
      collect: () => (calls++, Promise.reject(new Error("no"))),
      now: () => 0,
      minIntervalMs: 0,
    });
    keeper.check();
    used += HEAP_GROWTH_MIN_BYTES;
    keeper.check();
    await settle();
    used += HEAP_GROWTH_MIN_BYTES;
    keeper.check();
    expect(calls).to.equal(2);
  });

  it("holds a real service-like process's old generation near its live set", async function () {
    this.timeout(30_000);
    // Objects that live ~40 ms (like an instance's records) outlive the scavenges of a 1 MB
    // semi-space, as the services run, and are promoted: V8 alone let the old generation reach
    // ~43 MB here before collecting it; the keeper, checking every 100 ms, kept it under ~20.
    const script = `
      import { settleMemoryAfterStart, oldGenerationBytes } from ${JSON.stringify(
        path.resolve(import.meta.dirname, "../src/settle-memory.ts"),
      )};
      const keeper = settleMemoryAfterStart({ delaysMs: [20], checkMs: 100, minIntervalMs: 0 });
      const live = [];
      let max = 0;
      const t0 = Date.now();
      for (let n = 0; Date.now() - t0 < 3000; n++) {
        const batch = [];
        for (let i = 0; i < 3000; i++) batch.push({ i, s: "x" + i + n });
        live.push(batch);
        if (live.length > 20) live.shift();
        await new Promise((r) => setTimeout(r, 2));
        if (Date.now() - t0 > 1000) max = Math.max(max, oldGenerationBytes());
      }
      console.log(JSON.stringify({ max, collections: keeper.collections }));
    `;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        "--expose-gc",
        "--max-semi-space-size=1",
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        script,
      ],
      { cwd: path.resolve(import.meta.dirname, "..") },
    );
    const got = JSON.parse(stdout.trim()) as { max: number; collections: number };
    expect(got.collections).to.be.greaterThan(0);
    expect(got.max).to.be.lessThan(30 * MB);
  });
});
