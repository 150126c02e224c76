import type {
  FunctionObject,
  Instance,
  InstanceEventMessage,
  InstancesChanged,
  ObjectsByPlural,
  RegistryChanged,
  UsageReport,
} from "@fizz/events";
import type { Logger, RegistryListing } from "@fizz/kit";
import type { Catalog, CatalogKind } from "./catalog";
import { recordReport, type InstanceTable } from "./instance-table";
import type { Retirer } from "./retirement";

/** Event handlers, on the model only (the NATS wiring is in subscriptions.ts). */
export interface Model {
  catalog: Catalog;
  table: InstanceTable;
  retirer: Retirer;
  now: () => number;
  logger: Logger;
  /** Told when a function may have fewer instances than its minInstances (change, death). */
  minInstances?: { check(namespace: string, name: string): void };
  /** Told when an instance appeared, so leases waiting for another replica's look at once. */
  waiters?: { instanceAppeared(namespace: string, name: string): void };
}

/**
 * registry.changed.functions|environments. A function update makes a new revision: instances of
 * older revisions stop being handed out at once (gateways are told) and are retired after the
 * drain period, so no new request reaches old code once the change event is seen.
 */
export function onRegistryChanged(m: Model, ev: RegistryChanged): void {
  const obj = ev.object;
  if (obj.kind === "Environment") {
    if (ev.op === "deleted") m.catalog.removeEnvironment(obj);
    else m.catalog.putEnvironment(obj);
    return;
  }
  if (obj.kind !== "Function") return;
  if (ev.op === "deleted") {
    const { namespace, name, revision } = obj.metadata;
    const instances = [...m.table.ofFunction(namespace, name)];
    if (m.catalog.removeFunction(obj)) m.retirer.drain(instances, "function deleted", revision);
    return;
  }
  applyFunction(m, ev.op, obj);
}

/**
 * What followRegistryListing calls for one catalog kind (at start and after every NATS
 * reconnect): each attempt opens the catalog's listing window, so writes that cross the listing
 * win over it (the window stands in for `listedAt`), and a failed attempt closes it. A function
 * the listing no longer holds was deleted while events were lost: its instances are drained as for
 * a delete event; one it holds in another incarnation or revision than cached was deleted and
 * created again, or updated, while events were lost: what that supersedes is drained as for a
 * create or update event (every instance for another incarnation, since instances carry no uid),
 * and minInstances is checked for it. `onLoaded` runs after each listing once both kinds were
 * listed (the caller tops up minInstances then, which must not see functions the listing removed).
 */
export function catalogListing<K extends CatalogKind>(
  m: Model,
  kind: K,
  onLoaded: () => void,
): {
  onAttempt(): void;
  onFailure(): void;
  onList(items: ReadonlyArray<ObjectsByPlural[K]>, listing?: RegistryListing): void;
} {
  return {
    onAttempt: () => m.catalog.beginListing(kind),
    onFailure: () => m.catalog.abortListing(kind),
    onList: (items, listing) => {
      const { loaded, removed, replaced } = m.catalog.listed(kind, items, listing?.skipped);
      for (const obj of removed) {
        if (obj.kind !== "Function") continue;
        const { namespace, name, revision } = obj.metadata;
        m.retirer.drain(
          m.table.ofFunction(namespace, name),
          "function deleted (missing from the registry listing)",
          revision,
        );
      }
      for (const { old, new: obj } of replaced) {
        if (old.kind !== "Function" || obj.kind !== "Function") continue;
        const { namespace, name, revision } = obj.metadata;
        // Instances carry a revision, not a uid: of a function deleted and created again, every
        // instance may be the old incarnation's (its revisions restart at 1), so all of them go.
        const recreated = old.metadata.uid !== obj.metadata.uid;
        const stale = [...m.table.ofFunction(namespace, name)].filter(
          (t) => recreated || t.revision < revision,
        );
        m.retirer.drain(
          stale,
          recreated
            ? `function deleted and created again (registry listing, revision ${revision})`
            : `superseded by revision ${revision} (registry listing)`,
          revision,
        );
        m.minInstances?.check(namespace, name);
      }
      if (loaded) onLoaded();
    },
  };
}

/**
 * A created or updated function, from an event or read from the registry (a lease that names a
 * newer revision than cached): cache it, drain what it supersedes, and top up minInstances.
 * Returns false when the object is older than what is cached.
 */
export function applyFunction(m: Model, op: "created" | "updated", obj: FunctionObject): boolean {
  const { namespace, name, revision } = obj.metadata;
  if (!m.catalog.putFunction(obj)) return false;
  // A "created" function that has instances is a new incarnation of a deleted one (revision
  // restarts at 1), so anything but its own revision is stale. An update only obsoletes older revisions.
  const stale = [...m.table.ofFunction(namespace, name)].filter((t) =>
    op === "created" ? t.revision !== revision : t.revision < revision,
  );
  m.retirer.drain(stale, `superseded by revision ${revision}`, revision);
  m.minInstances?.check(namespace, name);
  return true;
}

/** poolkeeper.instance.<event>. */
export function onInstanceEvent(m: Model, ev: InstanceEventMessage): void {
  if (ev.event === "died" || ev.event === "retired") {
    m.retirer.forget(ev.instance, ev.reason ? `${ev.event}: ${ev.reason}` : ev.event);
    const fn = ev.instance.function;
    if (fn) m.minInstances?.check(fn.namespace, fn.name);
  } else if (ev.event === "specialized") {
    adoptIfCurrent(m, ev.instance);
    const fn = ev.instance.function;
    if (fn) m.waiters?.instanceAppeared(fn.namespace, fn.name);
  }
}

/**
 * An instance specialized for the current revision that this replica did not ask for (another
 * scheduler replica, or a specialize reply that timed out here): it serves leases at once. The
 * replica that asked writes it to Redis; reconcile covers the rest.
 */
function adoptIfCurrent(m: Model, instance: Instance): void {
  const fn = instance.function;
  if (!fn || m.table.get(instance.id) || m.table.isTombstoned(instance.id, m.now())) return;
  if (m.catalog.fn(fn.namespace, fn.name)?.metadata.revision !== fn.revision) return;
  m.table.add(instance, m.now());
}

/**
 * scheduler.instances.<ns>.<fn> from another scheduler replica: it stopped handing these
 * instances out (drained, retired, reported failed by a gateway), so this replica stops too. The
 * replica that decided does the rest (Redis, poolkeeper.retire).
 */
export function onInstancesRemovedElsewhere(m: Model, msg: InstancesChanged): void {
  for (const id of msg.removed) {
    const t = m.table.get(id);
    if (t && t.namespace === msg.namespace && t.name === msg.function) m.retirer.dropQuietly(t);
  }
}

/** scheduler.report: per-instance usage from one gateway (about once a second). */
export function onUsageReport(m: Model, report: UsageReport): void {
  const now = m.now();
  for (const item of report.items) {
    const t = m.table.get(item.instanceId);
    // A report naming another function than we know for that id is about a reused id; ignore it.
    if (!t || t.namespace !== item.namespace || t.name !== item.function) continue;
    recordReport(t, report.gateway, item, now);
    if (t.draining) m.retirer.maybeFinishDrain(t);
  }
}
