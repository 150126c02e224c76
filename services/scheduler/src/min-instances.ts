import { FizzError } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import type { Catalog } from "./catalog";
import { functionKey, type InstanceTable } from "./instance-table";
import type { Specializer } from "./specializer";

export interface MinInstancesDeps {
  catalog: Catalog;
  table: InstanceTable;
  specializer: Specializer;
  /** After a failed top-up, leave the function alone this long (a broken function, an empty pool). */
  retryMs: number;
  now: () => number;
  logger: Logger;
}

/**
 * Keeps at least min(minInstances, maxInstances) specialized instances of every function's
 * current revision, created before any request needs them: checked when a function is created or
 * updated, when one of its instances dies or is retired, when the catalog is (re)loaded, and on
 * every reaper tick (which catches whatever an event missed). Top-ups go through the same
 * specialization claims as leases, so replicas checking at once create the missing instances
 * once, and a lease arriving meanwhile joins one of them instead of starting its own.
 */
export class MinInstances {
  private enabled = false;
  /** Functions with a top-up in progress here: not checked again until it settles. */
  private readonly running = new Set<string>();
  private readonly retryAfter = new Map<string, number>();
  private readonly background = new Set<Promise<void>>();
  private readonly log: Logger;

  constructor(private readonly d: MinInstancesDeps) {
    this.log = d.logger.child({ component: "min-instances" });
  }

  /** Before the route cache is rebuilt every function would look empty: checks wait for this. */
  enable(): void {
    this.enabled = true;
    this.checkAll();
  }

  disable(): void {
    this.enabled = false;
  }

  checkAll(): void {
    for (const fn of this.d.catalog.functions())
      if (fn.spec.minInstances > 0) this.check(fn.metadata.namespace, fn.metadata.name);
  }

  check(namespace: string, name: string): void {
    if (!this.enabled) return;
    const fn = this.d.catalog.fn(namespace, name);
    if (!fn) return;
    const target = Math.min(fn.spec.minInstances, fn.spec.maxInstances);
    const { revision } = fn.metadata;
    if (target <= 0 || this.d.table.liveCount(namespace, name, revision) >= target) return;
    const key = functionKey(namespace, name);
    if (this.running.has(key) || (this.retryAfter.get(key) ?? 0) > this.d.now()) return;
    this.running.add(key);
    const p = (async () => {
      try {
        const r = await this.d.catalog.resolve(namespace, name);
        if (r.fn.metadata.revision !== revision) return; // changed meanwhile; its own check follows
        const opened = await this.d.specializer.warm(r, target);
        this.retryAfter.delete(key);
        if (opened > 0)
          this.log.info(
            { function: key, revision, opened, minInstances: target },
            "topped up minInstances",
          );
      } catch (err) {
        const fe = FizzError.from(err);
        this.retryAfter.set(key, this.d.now() + this.d.retryMs);
        this.log.warn(
          { function: key, revision, code: fe.code, err: fe.message, retryInMs: this.d.retryMs },
          "could not top up minInstances",
        );
      } finally {
        this.running.delete(key);
      }
    })();
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }

  /** Resolves once every top-up started so far has settled. */
  async idle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }
}
