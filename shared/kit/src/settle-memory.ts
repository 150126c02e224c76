/** When, after the process starts, the collections below run: start-up done, then settled. */
const SETTLE_AFTER_MS = [5_000, 15_000, 45_000];
/**
 * How long after start a service's resident memory is its idle figure: the last settling
 * collection ran and had time to return pages. bench/memory.ts samples idle memory after this.
 */
export const MEMORY_SETTLED_AFTER_MS = SETTLE_AFTER_MS[SETTLE_AFTER_MS.length - 1]! + 5_000;

type ExposedGc = (opts: { type: "major"; execution: "async" }) => unknown;

/**
 * Start-up (loading the bundle, connecting, the first listings) leaves garbage and half-empty
 * heap pages that an idle service may not collect for a long time: V8 collects when it allocates.
 * With `--expose-gc` (the launcher and the images pass it: scripts/lib/service-build.mjs) this runs
 * a few full, incremental collections in the first minute, which compact the heap and return the
 * freed pages: several MB of resident memory per service. Without the flag it does nothing.
 */
export function settleMemoryAfterStart(delaysMs: readonly number[] = SETTLE_AFTER_MS): void {
  const gc = (globalThis as { gc?: ExposedGc }).gc;
  if (gc === undefined) return;
  // Incremental ("async"): the marking runs alongside the service, so no long pause.
  for (const ms of delaysMs)
    setTimeout(() => void gc({ type: "major", execution: "async" }), ms).unref();
}
