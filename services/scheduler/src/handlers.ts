import type { Instance, InstanceEventMessage, RegistryChanged, UsageReport } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import type { Catalog } from "./catalog";
import { recordReport, type InstanceTable } from "./instance-table";
import type { Retirer } from "./retirement";

/** Event handlers, on the model only (the NATS wiring is in subscriptions.ts). */
export interface Model {
  catalog: Catalog;
  table: InstanceTable;
  retirer: Retirer;
  now: () => number;
  logger: Logger;
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
  const { namespace, name, revision } = obj.metadata;
  const instances = [...m.table.ofFunction(namespace, name)];
  if (ev.op === "deleted") {
    if (m.catalog.removeFunction(obj)) m.retirer.drain(instances, "function deleted", revision);
    return;
  }
  if (!m.catalog.putFunction(obj)) return; // older than what we already know
  // A "created" function that has instances is a new incarnation of a deleted one (revision
  // restarts at 1), so anything but its own revision is stale. An update only obsoletes older revisions.
  const stale = instances.filter((t) =>
    ev.op === "created" ? t.revision !== revision : t.revision < revision,
  );
  m.retirer.drain(stale, `superseded by revision ${revision}`, revision);
}

/** poolkeeper.instance.<event>. */
export function onInstanceEvent(m: Model, ev: InstanceEventMessage): void {
  if (ev.event === "died" || ev.event === "retired") {
    m.retirer.forget(ev.instance, ev.reason ? `${ev.event}: ${ev.reason}` : ev.event);
  } else if (ev.event === "specialized") {
    adoptIfCurrent(m, ev.instance);
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
