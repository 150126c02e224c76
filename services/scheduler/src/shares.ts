import { instanceConcurrency, type Resolved } from "./catalog";
import { parseClaimToken, slotShare } from "./claims";
import {
  PENDING_GRANT_TTL_MS,
  recordGrant,
  revisionKey,
  type InstanceTable,
  type Tracked,
} from "./instance-table";

/**
 * How the members of a claim slot are accounted on the instance it created, and the top-up of a
 * lease answered early (docs/architecture.md "Cold path"): every member's share is recorded once
 * per slot on each replica that learns the slot's members; a new instance is shares-pending (pick
 * skips it) until the owner recorded them; a top-up is answered with the member's whole share.
 */

/** What a settled slot gave: the instance, and every member's gateway from the finished claim. */
export interface SlotOutcome {
  t: Tracked | undefined;
  /** Undefined when the claim could not be read back. */
  members: string[] | undefined;
}

/** What a top-up needs of a slot opened on this replica that has not settled yet. */
export interface LocalSlotView {
  promise: Promise<SlotOutcome>;
  /** Members that joined through this replica, the fallback when the claim cannot be read. */
  localMembers: number;
  /** The gateway of the owner's member when it was answered early (before the finish). */
  earlyGateway: string | undefined;
}

export interface SharesDeps {
  table: InstanceTable;
  now: () => number;
  /** This replica's unsettled slot under `key` (slotKey#owner), if any. */
  local(key: string): LocalSlotView | undefined;
  /** Reads another replica's claim until it settles, as a member does, or until `giveUpAt`. */
  follow(r: Resolved, slot: number, owner: string, giveUpAt?: number): Promise<SlotOutcome>;
  isUsable(t: Tracked): boolean;
}

/**
 * How long a top-up on another replica waits for a claim still open. The instance exists already
 * (the early answer came after it was admitted), so only the owner's finish, one Redis round trip,
 * is outstanding; a claim open longer means its owner died, and it would stay open until its TTL
 * (30 s and more) while the gateway's requests wait. The top-up then becomes an ordinary lease.
 */
export const TOP_UP_WAIT_MS = 2000;

export class Shares {
  /** Slots whose members' grants were recorded on the instance already (once per slot): their members, and when. */
  private readonly recorded = new WeakMap<
    Tracked,
    Map<string, { members: string[]; at: number }>
  >();
  /** New instances whose claim is finishing: no member's share is recorded yet, so pick() skips them. */
  private readonly pending = new WeakSet<Tracked>();

  constructor(private readonly d: SharesDeps) {}

  markPending(t: Tracked): void {
    this.pending.add(t);
  }

  settled(t: Tracked): void {
    this.pending.delete(t);
  }

  /** A new instance whose members' shares are not recorded yet: not to be leased from its free slots. */
  isPending(t: Tracked): boolean {
    return this.pending.has(t);
  }

  /** Records every member's share once per slot, so each replica accounts the whole instance. */
  record(t: Tracked, slot: string, members: string[], concurrency: number): void {
    let done = this.recorded.get(t);
    if (!done) this.recorded.set(t, (done = new Map<string, { members: string[]; at: number }>()));
    if (done.has(slot)) return;
    const now = this.d.now();
    done.set(slot, { members, at: now });
    members.forEach((gateway, i) => {
      if (gateway) recordGrant(t, gateway, slotShare(concurrency, members.length, i + 1), now);
    });
  }

  /**
   * A settled slot whose claim could not be read back: the owner's member answered early has no
   * share recorded by the finish; record its local split (the other members record theirs in
   * Specializer.acquire), kept as the slot's members for a top-up that comes after it settled.
   */
  recordEarlySplit(r: Resolved, key: string, slot: LocalSlotView, out: SlotOutcome): void {
    if (!out.t || out.members || slot.earlyGateway === undefined) return;
    const concurrency = instanceConcurrency(out.t, r);
    const members = [slot.earlyGateway, ...new Array<string>(slot.localMembers - 1).fill("")];
    this.record(out.t, key, members, concurrency);
  }

  /**
   * The rest of a lease answered early (`more`): the member's whole share of the instance, once
   * the claim's finish recorded every member's. On the owner's replica from its slot (or what it
   * recorded), elsewhere by reading the claim as a member would. Undefined when the share cannot
   * be known (claim expired, the instance gone or no longer current, not this gateway's member).
   */
  async topUp(
    r: Resolved,
    req: { instanceId: string; claim: string },
    gateway: string,
  ): Promise<{ t: Tracked; slots: number } | undefined> {
    const c = parseClaimToken(req.claim);
    if (!c || c.revision !== r.fn.metadata.revision) return undefined;
    const key = `${slotKey(r, c.slot)}#${c.owner}`;
    let out: SlotOutcome;
    const local = this.d.local(key);
    const known = this.d.table.get(req.instanceId);
    const cached = known && this.recorded.get(known)?.get(key)?.members;
    if (local) out = await local.promise;
    else if (known && cached) out = { t: known, members: cached };
    else out = await this.d.follow(r, c.slot, c.owner, this.d.now() + TOP_UP_WAIT_MS);
    const t = out.t;
    if (!t || t.id !== req.instanceId || !this.d.isUsable(t)) return undefined;
    const concurrency = instanceConcurrency(t, r);
    if (!out.members) {
      // The claim could not be read back: the local split, recorded when the slot settled.
      if (!local || local.earlyGateway !== gateway || c.member !== 1) return undefined;
      const slots = slotShare(concurrency, local.localMembers, 1);
      this.recountTopUp(t, key, gateway, slots);
      return { t, slots };
    }
    if (out.members[c.member - 1] !== gateway) return undefined;
    this.record(t, key, out.members, concurrency);
    const slots = slotShare(concurrency, out.members.length, c.member);
    this.recountTopUp(t, key, gateway, slots);
    return { t, slots };
  }

  /**
   * The share a top-up answers was recorded when the slot settled; it still counts as this
   * gateway's load unless the gateway reported on the instance since (a report replaces its
   * pending grants) or the grant aged out. Then the top-up is a grant like any other and is
   * recorded again: else the instance's slots the gateway may now fill look free to the others.
   */
  private recountTopUp(t: Tracked, key: string, gateway: string, slots: number): void {
    const at = this.recorded.get(t)?.get(key)?.at;
    const u = t.usage.get(gateway);
    const now = this.d.now();
    const counted =
      at !== undefined &&
      u !== undefined &&
      u.reportedAt < at &&
      now - u.grantedAt < PENDING_GRANT_TTL_MS;
    if (!counted) recordGrant(t, gateway, slots, now);
  }
}

/** A claim slot of the resolved revision: `<ns>/<name>/<revision>/<slot>`. */
export function slotKey(r: Resolved, slot: number): string {
  const { namespace, name, revision } = r.fn.metadata;
  return `${revisionKey(namespace, name, revision)}/${slot}`;
}
