import type { Logger } from "@fizz/kit";
import type { PoolkeeperClient } from "./clients";
import { functionKey, type InstanceTable } from "./instance-table";
import type { Retirer } from "./retirement";
import type { RouteStore } from "./route-cache";

export interface ReconcileDeps {
  table: InstanceTable;
  routes: RouteStore;
  poolkeeper: PoolkeeperClient;
  retirer: Retirer;
  now: () => number;
  logger: Logger;
}

/** After a restart: the route cache in Redis becomes the in-memory table again. */
export async function rebuildFromRedis(
  d: Pick<ReconcileDeps, "table" | "routes" | "now">,
): Promise<number> {
  const instances = await d.routes.loadAll();
  let n = 0;
  for (const inst of instances) {
    if (d.table.isTombstoned(inst.id, d.now())) continue;
    if (d.table.add(inst, d.now())) n++;
  }
  return n;
}

/**
 * The poolkeeper's list is the truth about what exists: instances it no longer has are dropped
 * (gateways told, Redis cleaned), and specialized instances we do not know are adopted and written
 * to Redis (a specialize reply lost to a timeout or a crash would otherwise leak an instance).
 * Adopted instances of old revisions or deleted functions are drained by the reaper's sweep.
 * Instances a gateway reported failed are never adopted: while listed, they are retired again.
 */
export async function reconcileWithPoolkeeper(
  d: ReconcileDeps,
): Promise<{ dropped: number; adopted: number }> {
  const askedAt = d.now();
  const list = await d.poolkeeper.list();
  const listed = new Map(list.map((i) => [i.id, i]));
  let dropped = 0;
  for (const t of [...d.table.all()]) {
    // Instances added while the list was on its way are newer than the list: keep them.
    if (t.addedAt >= askedAt) continue;
    const seen = listed.get(t.id);
    const f = seen?.function;
    // Same id but no longer loaded with this function revision: routing to it would misdirect.
    const same =
      seen?.state === "specialized" &&
      f?.namespace === t.namespace &&
      f.name === t.name &&
      f.revision === t.revision;
    if (same) continue;
    d.retirer.forget(
      t.instance,
      seen ? "poolkeeper lists it with another state or function" : "not in poolkeeper.list",
    );
    dropped++;
  }
  let adopted = 0;
  for (const id of d.table.condemnedIds()) if (!listed.has(id)) d.table.absolve(id);
  for (const inst of list) {
    if (d.table.isCondemned(inst.id)) {
      const said = d.table.condemnedFor(inst.id);
      const f = inst.function;
      if (said === undefined || (f && said === functionKey(f.namespace, f.name))) {
        // A gateway reported it failed and it is still there: the earlier retire did not take.
        d.retirer.retireUntracked(inst.id, "reported failed by a gateway; still listed");
        continue;
      }
      d.table.absolve(inst.id); // the gateway named it for another function: not ours to kill
    }
    if (inst.state !== "specialized" || !inst.function) continue;
    if (d.table.get(inst.id) || d.table.isTombstoned(inst.id, d.now())) continue;
    const t = d.table.add(inst, d.now());
    if (!t) continue;
    adopted++;
    try {
      await d.routes.put(inst);
    } catch (err) {
      d.logger.warn(
        { instance: inst.id, err: (err as Error).message },
        "could not write an adopted route to Redis",
      );
    }
  }
  if (dropped || adopted) d.logger.info({ dropped, adopted }, "reconciled with the poolkeeper");
  return { dropped, adopted };
}
