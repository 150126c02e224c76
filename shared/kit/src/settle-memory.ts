import { PerformanceObserver, constants, performance } from "node:perf_hooks";
import { getHeapSpaceStatistics } from "node:v8";

/** When, after the process starts, the collections below run: start-up done, then settled. */
const SETTLE_AFTER_MS = [5_000, 15_000, 45_000];
/**
 * How long after start a service's resident memory is its idle figure: the last settling
 * collection ran and had time to return pages. bench/memory.ts samples idle memory after this.
 */
export const MEMORY_SETTLED_AFTER_MS = SETTLE_AFTER_MS[SETTLE_AFTER_MS.length - 1]! + 5_000;

/** How often the heap keeper reads the old generation's size (a few µs each time). */
export const HEAP_CHECK_MS = 10_000;
/** Old-generation growth over the last collection's floor that sets off a collection. */
export const HEAP_GROWTH_MIN_BYTES = 2 * 1024 * 1024;
/** ... or this share of the floor, when larger: a big live set is not collected every few MB. */
export const HEAP_GROWTH_SHARE = 0.125;
/**
 * At most one of the keeper's collections this often: a service promoting fast (a busy gateway)
 * reaches V8's own limit soon enough, and should not run a full marking every check.
 */
export const HEAP_KEEPER_MIN_INTERVAL_MS = 30_000;

export interface SettleOptions {
  /** After start, the settling collections. */
  delaysMs?: readonly number[];
  checkMs?: number;
  minIntervalMs?: number;
}

type ExposedGc = (opts: { type: "major"; execution: "async" }) => unknown;

/**
 * Start-up (loading the bundle, connecting, the first listings) leaves garbage and half-empty
 * heap pages that an idle service may not collect for a long time: V8 collects when it allocates.
 * With `--expose-gc` (the launcher and the images pass it: scripts/lib/service-build.mjs) this runs
 * a few full, incremental collections in the first minute, which compact the heap and return the
 * freed pages: several MB of resident memory per service, and then keeps the old generation near
 * its live size (HeapKeeper). Without the flag it does nothing.
 */
export function settleMemoryAfterStart(opts: SettleOptions = {}): HeapKeeper | undefined {
  const {
    delaysMs = SETTLE_AFTER_MS,
    checkMs = HEAP_CHECK_MS,
    minIntervalMs = HEAP_KEEPER_MIN_INTERVAL_MS,
  } = opts;
  const gc = (globalThis as { gc?: ExposedGc }).gc;
  if (gc === undefined) return undefined;
  // Incremental ("async"): the marking runs alongside the service, so no long pause.
  const collect = () => Promise.resolve(gc({ type: "major", execution: "async" }));
  for (const ms of delaysMs) setTimeout(() => void collect(), ms).unref();
  const keeper = new HeapKeeper({
    oldGenerationBytes,
    collect,
    now: () => performance.now(),
    minIntervalMs,
  });
  // What a full collection left is the live set: the floor growth is counted from. (prom-client's
  // default metrics observe every collection already; this adds one callback per entry.)
  new PerformanceObserver((list) => {
    for (const e of list.getEntries() as Array<{ detail?: { kind?: number } }>)
      if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) keeper.afterFullCollection();
  }).observe({ entryTypes: ["gc"] });
  setInterval(() => keeper.check(), checkMs).unref();
  return keeper;
}

/** Bytes in use in the old generation (old space and large objects; not new or code space). */
export function oldGenerationBytes(): number {
  let used = 0;
  for (const s of getHeapSpaceStatistics())
    if (s.space_name === "old_space" || s.space_name === "large_object_space")
      used += s.space_used_size;
  return used;
}

export interface HeapKeeperDeps {
  oldGenerationBytes(): number;
  /** A full, incremental collection; settles when it is done. */
  collect(): Promise<unknown>;
  now(): number;
  minIntervalMs: number;
}

/**
 * Collects the old generation once it has grown 2 MB (or an eighth) past what the last full
 * collection left.
 *
 * Why: objects that outlive two scavenges of the services' 1 MB semi-spaces (an instance's
 * records, its child process and streams, a request's state: everything living seconds) are
 * promoted, and for a heap this small V8 runs its next full collection only when the old
 * generation has grown ~8 MB past the last one's result. Until then the garbage sits in resident
 * pages: in the soak the poolkeeper's live heap grew 0.11 MB in 10 minutes (heap snapshots, all
 * of it JIT code) while its RSS rose ~1 MB a minute, then fell at V8's collection (a sawtooth a
 * pod's memory limit sees the top of). An incremental collection of a ~15 MB heap costs a few ms
 * of CPU, mostly concurrent with the service, and returns the freed pages; at the soak's rates it
 * runs every few minutes. The floor follows the live set up and down, so a service holding more
 * (a registry over 10,000 functions) is not collected over and over, and a leak still shows as a
 * rising floor.
 */
export class HeapKeeper {
  private floor: number | undefined;
  private collecting = false;
  private lastStart = -Infinity;
  /** Collections this keeper set off (read by tests). */
  collections = 0;

  constructor(private readonly deps: HeapKeeperDeps) {}

  /** After any full collection (V8's own, a settling one, this keeper's): the new floor. */
  afterFullCollection(): void {
    this.floor = this.deps.oldGenerationBytes();
  }

  check(): void {
    if (this.collecting) return;
    const used = this.deps.oldGenerationBytes();
    // Before the first full collection was seen, the lowest reading stands in for the floor.
    if (this.floor === undefined || used < this.floor) this.floor = used;
    const allowed = Math.max(HEAP_GROWTH_MIN_BYTES, this.floor * HEAP_GROWTH_SHARE);
    if (used - this.floor < allowed) return;
    const now = this.deps.now();
    if (now - this.lastStart < this.deps.minIntervalMs) return;
    this.lastStart = now;
    this.collecting = true;
    this.collections++;
    void this.deps
      .collect()
      .catch(() => undefined)
      .finally(() => {
        this.collecting = false;
        this.floor = this.deps.oldGenerationBytes();
      });
  }
}
