import type { FunctionRef, Instance } from "@fizz/events";
import type { ClaimError, ClaimStore, JoinRequest, JoinResult, SlotRecord } from "../src/claims";

interface Entry {
  record: SlotRecord;
  expiresAt: number;
}

/**
 * The claim semantics of redis-claims.ts in memory, for unit tests: share one between two
 * Specializers to play two scheduler replicas on one Redis. Expiry follows `now` (the test clock).
 */
export class MemoryClaims implements ClaimStore {
  readonly slots = new Map<string, Map<number, Entry>>();
  joins = 0;

  constructor(private readonly now: () => number) {}

  join(req: JoinRequest): Promise<JoinResult> {
    return Promise.resolve(this.joinNow(req));
  }

  private joinNow(req: JoinRequest): JoinResult {
    this.joins++;
    const slots = this.revision(req.fn);
    const live = new Set(req.live);
    const gone = new Set(req.gone);
    let busy = 0;
    let room: number | undefined;
    for (const [k, e] of [...slots]) {
      if (e.expiresAt <= this.now()) {
        slots.delete(k);
        continue;
      }
      const rec = e.record;
      if (rec.state === "open") {
        busy++;
        if (
          req.mode === "lease" &&
          rec.members.length < req.capacity &&
          (room === undefined || k < room)
        )
          room = k;
      } else if (rec.state === "done") {
        const id = rec.instance?.id ?? "";
        if (!live.has(id) && !gone.has(id)) busy++;
      }
    }
    if (room !== undefined) {
      const rec = slots.get(room)!.record;
      rec.members.push(req.gateway);
      return { kind: "member", slot: room, owner: rec.owner, member: rec.members.length };
    }
    if (live.size + busy >= req.limit) return { kind: "full", live: live.size, busy };
    let k = 0;
    while (slots.has(k)) k++;
    const members = req.mode === "lease" ? [req.gateway] : [];
    slots.set(k, {
      record: { state: "open", owner: req.owner, members },
      expiresAt: this.now() + req.ttlMs,
    });
    return { kind: "owner", slot: k, owner: req.owner, member: members.length };
  }

  finish(
    fn: FunctionRef,
    slot: number,
    owner: string,
    outcome:
      | { state: "done"; instance: Instance }
      | { state: "failed"; error: ClaimError }
      | { state: "dropped" },
    ttlMs: number,
  ): Promise<SlotRecord | undefined> {
    const e = this.live(fn, slot);
    if (!e || e.record.state !== "open" || e.record.owner !== owner)
      return Promise.resolve(undefined);
    e.record = { ...e.record, ...outcome };
    e.expiresAt = this.now() + ttlMs;
    return Promise.resolve(structuredClone(e.record));
  }

  read(fn: FunctionRef, slot: number): Promise<SlotRecord | undefined> {
    const e = this.live(fn, slot);
    return Promise.resolve(e ? structuredClone(e.record) : undefined);
  }

  /** What a crashed replica leaves behind: an open claim nobody will finish. */
  abandon(fn: FunctionRef, owner: string, ttlMs: number, members: string[] = []): void {
    const slots = this.revision(fn);
    let k = 0;
    while (slots.has(k)) k++;
    slots.set(k, { record: { state: "open", owner, members }, expiresAt: this.now() + ttlMs });
  }

  private live(fn: FunctionRef, slot: number): Entry | undefined {
    const e = this.revision(fn).get(slot);
    return e && e.expiresAt > this.now() ? e : undefined;
  }

  private revision(fn: FunctionRef): Map<number, Entry> {
    const key = `${fn.namespace}/${fn.name}/${fn.revision}`;
    let m = this.slots.get(key);
    if (!m) this.slots.set(key, (m = new Map<number, Entry>()));
    return m;
  }
}
