import type { KubeEvent } from "./delivery";
import type { ResolvedResource } from "./discovery";
import type { KubeObject } from "./kube-client";
import type { ObjectRecord, WatchStateStore } from "./state-store";

const WRITE_BATCH = 64;

/** Records every listed object as known (and delivered): the first listing of a key. */
export async function saveSnapshot(
  state: WatchStateStore,
  keyId: string,
  items: KubeObject[],
): Promise<void> {
  const withUid = items.filter((o) => o.metadata?.uid);
  for (let i = 0; i < withUid.length; i += WRITE_BATCH) {
    await Promise.all(
      withUid
        .slice(i, i + WRITE_BATCH)
        .map((o) => state.putObject(keyId, o.metadata!.uid!, record(o))),
    );
  }
}

/**
 * After 410 Gone the events in between are lost for good; what can still be told is how the
 * world differs from what was delivered. Compared with the snapshot: objects that vanished are
 * DELETED (with the identity and labels last delivered), new uids are ADDED, and a changed
 * resourceVersion is MODIFIED (once, however many times it changed). Deletions go first (an object
 * deleted and created again under the same name is DELETED, then ADDED), the rest in
 * resourceVersion order. Each difference is recorded as soon as it is delivered, so a crash
 * halfway leaves only the remaining differences for the next attempt.
 */
export async function resync(opts: {
  state: WatchStateStore;
  keyId: string;
  list: KubeObject[];
  resource: ResolvedResource;
  deliver(ev: KubeEvent): Promise<void>;
}): Promise<{ added: number; modified: number; deleted: number }> {
  const { state, keyId, resource } = opts;
  const snapshot = await state.snapshot(keyId);
  const listed = new Set(opts.list.map((o) => o.metadata?.uid).filter((u): u is string => !!u));
  const stats = { added: 0, modified: 0, deleted: 0 };

  for (const [uid, rec] of snapshot) {
    if (listed.has(uid)) continue;
    await opts.deliver({ type: "DELETED", object: lastKnown(uid, rec, resource), resource });
    await state.removeObject(keyId, uid);
    stats.deleted++;
  }
  for (const obj of sortByResourceVersion(opts.list)) {
    const uid = obj.metadata?.uid;
    if (!uid) continue;
    const before = snapshot.get(uid);
    if (before && before.resourceVersion === obj.metadata?.resourceVersion) continue;
    const type = before ? "MODIFIED" : "ADDED";
    await opts.deliver({ type, object: obj, resource });
    await state.putObject(keyId, uid, record(obj));
    stats[before ? "modified" : "added"]++;
  }
  return stats;
}

function record(obj: KubeObject): ObjectRecord {
  const m = obj.metadata ?? {};
  return {
    name: m.name ?? "",
    namespace: m.namespace,
    resourceVersion: m.resourceVersion ?? "",
    labels: m.labels as Record<string, string> | undefined,
  };
}

/** The minimal object a deletion found by relisting carries. */
function lastKnown(uid: string, rec: ObjectRecord, r: ResolvedResource): KubeObject {
  const metadata: Record<string, unknown> = {
    name: rec.name,
    uid,
    resourceVersion: rec.resourceVersion,
  };
  if (rec.namespace !== undefined) metadata.namespace = rec.namespace;
  if (rec.labels !== undefined) metadata.labels = rec.labels;
  return { apiVersion: r.apiVersion, kind: r.kind, metadata };
}

/**
 * resourceVersions are opaque strings; in practice they are etcd revisions, decimal integers, and
 * then sorting by them approximates the order the changes happened in. Otherwise list order.
 */
function sortByResourceVersion(items: KubeObject[]): KubeObject[] {
  const rvs = items.map((o) => o.metadata?.resourceVersion ?? "");
  if (!rvs.every((rv) => /^\d+$/.test(rv))) return items;
  return [...items].sort((a, b) => {
    const x = BigInt(a.metadata!.resourceVersion!);
    const y = BigInt(b.metadata!.resourceVersion!);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

export { record as recordOf };
