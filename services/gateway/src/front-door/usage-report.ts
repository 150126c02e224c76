import type { LeaseEntry } from "./function-leases";

export interface UsageItem {
  instanceId: string;
  namespace: string;
  function: string;
  inFlight: number;
  served: number;
  lastUsedAt: number;
}

/**
 * Leases used since the last usage report (`scheduler.report`, about once a second): the
 * scheduler accounts each instance's load from what every gateway reports in flight, so a lease
 * stays listed while it has requests in flight, even after it was dropped.
 */
export class UsageTracker {
  private touched: LeaseEntry[] = [];

  /** A slot of `e` was taken: list it in the next report. */
  mark(e: LeaseEntry): void {
    if (!e.touched) {
      e.touched = true;
      this.touched.push(e);
    }
  }

  /** Usage since the last call: instances used since then, plus those with requests in flight. */
  takeReport(): UsageItem[] {
    const items: UsageItem[] = [];
    const keep: LeaseEntry[] = [];
    for (const e of this.touched) {
      items.push({
        instanceId: e.instanceId,
        namespace: e.fn.namespace,
        function: e.fn.name,
        inFlight: e.inFlight,
        served: e.served,
        lastUsedAt: e.lastUsedAt,
      });
      e.served = 0;
      if (e.inFlight > 0) keep.push(e);
      else e.touched = false;
    }
    this.touched = keep;
    return items;
  }

  /** Adds the addresses of listed leases with requests in flight (dropped ones included). */
  addInFlight(set: Set<string>): void {
    for (const e of this.touched) if (e.inFlight > 0) set.add(e.address);
  }
}
