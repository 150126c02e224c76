import type { FunctionLeases, LeaseEntry } from "./function-leases";

/** What a change event needs of the lease manager. */
export interface LeaseChangeTarget {
  get(namespace: string, name: string): FunctionLeases | undefined;
  drop(e: LeaseEntry, failed: boolean): void;
  /** Asks the scheduler now for a function with waiting requests. */
  reask(fl: FunctionLeases): void;
}

/** `scheduler.instances.<ns>.<fn>`: instances removed, or the function moved to a new revision. */
export function instancesChanged(
  m: LeaseChangeTarget,
  namespace: string,
  name: string,
  revision: number,
  removed: readonly string[],
): void {
  const fl = m.get(namespace, name);
  if (!fl) return;
  if (revision > fl.minRevision) fl.minRevision = revision;
  for (const e of [...fl.leases]) {
    if (e.revision < fl.minRevision || removed.includes(e.instanceId)) m.drop(e, false);
  }
}

/** `registry.changed.functions`: a new revision drops older leases; a delete drops them all. */
export function functionChanged(
  m: LeaseChangeTarget,
  op: "created" | "updated" | "deleted",
  namespace: string,
  name: string,
  revision: number,
): void {
  const fl = m.get(namespace, name);
  if (!fl) return;
  if (op === "deleted" || op === "created") {
    // A re-created function starts its revisions again; leases of the old one are all stale.
    fl.minRevision = op === "created" ? revision : 0;
    for (const e of [...fl.leases]) m.drop(e, false);
  } else {
    if (revision > fl.minRevision) fl.minRevision = revision;
    for (const e of [...fl.leases]) if (e.revision < fl.minRevision) m.drop(e, false);
  }
  // Waiting requests need the new revision's instances (or the scheduler's NOT_FOUND) now.
  if (fl.queue.length > 0) m.reask(fl);
}
