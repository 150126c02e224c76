import type { Logger } from "@fizz/kit";
import type { Catalog } from "./catalog";
import type { InstanceTable } from "./instance-table";
import type { Retirer } from "./retirement";

export interface ReaperDeps {
  table: InstanceTable;
  catalog: Catalog;
  retirer: Retirer;
  intervalMs: number;
  now: () => number;
  logger: Logger;
  minInstances?: { checkAll(): void };
}

/**
 * Every interval: drain instances idle longer than their function's idleTimeoutSeconds (most idle
 * first), keeping minInstances of the current revision. Draining tells gateways first and retires
 * after the drain period, so a request that raced the decision still finishes.
 *
 * It also sweeps what events may have missed: instances of revisions older than the cached one,
 * and (once the catalog is loaded) instances of functions that no longer exist, e.g. after a
 * restart that rebuilt them from Redis.
 *
 * Last, it asks minInstances to top up every function below its minimum (min-instances.ts).
 */
export class Reaper {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly d: ReaperDeps) {}

  start(): void {
    this.timer ??= setInterval(() => {
      try {
        this.tick();
      } catch (err) {
        this.d.logger.error({ err }, "reaper tick failed");
      }
    }, this.d.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  tick(): void {
    const { table, catalog, retirer } = this.d;
    const now = this.d.now();
    table.sweepTombstones(now);
    for (const { namespace, name, instances } of table.functions()) {
      const live = instances.filter((t) => !t.draining);
      if (live.length === 0) continue;
      const fn = catalog.fn(namespace, name);
      if (!fn) {
        if (catalog.loaded) retirer.drain(live, "function no longer exists");
        continue;
      }
      const current = fn.metadata.revision;
      retirer.drain(
        live.filter((t) => t.revision < current),
        `superseded by revision ${current}`,
      );
      const mine = live.filter((t) => t.revision === current);
      const spare = mine.length - fn.spec.minInstances;
      if (spare <= 0) continue;
      const idleMs = fn.spec.idleTimeoutSeconds * 1000;
      const idle = mine
        .filter((t) => now - t.lastUsedAt >= idleMs)
        .sort((a, b) => a.lastUsedAt - b.lastUsedAt)
        .slice(0, spare);
      retirer.drain(idle, `idle for more than ${fn.spec.idleTimeoutSeconds}s`);
    }
    this.d.minInstances?.checkAll();
  }
}
