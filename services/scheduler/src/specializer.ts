import { FizzError, type FunctionRef, type Instance } from "@fizz/events";
import type { Clock, Logger } from "@fizz/kit";
import { effectiveConcurrency, instanceConcurrency, type Catalog, type Resolved } from "./catalog";
import {
  claimToken,
  FINISHED_SLOT_TTL_MS,
  slotShare,
  type ClaimMode,
  type ClaimStore,
  type JoinResult,
  type SlotRecord,
} from "./claims";
import type { PoolkeeperClient } from "./clients";
import { admitInstance, LoadFailures, requestInstance } from "./instance-admission";
import {
  functionKey,
  recordGrant,
  revisionKey,
  type InstanceTable,
  type Tracked,
} from "./instance-table";
import { phase } from "./phase-span";
import type { Retirer } from "./retirement";
import type { RouteStore } from "./route-cache";
import { Shares, slotKey, type LocalSlotView, type SlotOutcome } from "./shares";

export interface SpecializerDeps {
  catalog: Catalog;
  table: InstanceTable;
  poolkeeper: PoolkeeperClient;
  routes: RouteStore;
  retirer: Retirer;
  claims: ClaimStore;
  /** Names this replica in claim tokens (its envelope sender). */
  replica: string;
  claimTtlMs: number;
  /** How often a lease waiting for another replica's specialization reads its claim. */
  pollMs: number;
  loadFailureTtlMs: number;
  now: () => number;
  /** Timers (realClock.after in production; a hand-moved clock in unit tests). */
  after: Clock["after"];
  logger: Logger;
}

export interface Acquired {
  t: Tracked;
  /** This member's share of the new instance's concurrency (its first slot when `more` is set). */
  slots: number;
  outcome: "specialized" | "joined" | "topUp";
  /** A first part answered before the claim's finish: the token a top-up names (claimToken). */
  more?: string;
}

interface LocalSlot extends LocalSlotView {
  /** The instance once admitted, before the claim's finish (undefined: none to answer early with). */
  early: Promise<Tracked | undefined>;
}

/**
 * Creates instances, one specialization per need across every scheduler replica: a lease that
 * finds no free instance joins an open slot (claims.ts) or opens one and specializes. Members of a
 * slot opened here wait on its promise; members of another replica's slot read its claim until it
 * finishes (woken early when the instance's "specialized" event arrives), expires (a crashed
 * owner: ask again) or passes the claim TTL.
 */
export class Specializer {
  private readonly slots = new Map<string, LocalSlot>();
  private readonly loadFailures: LoadFailures;
  private readonly sleepers = new Map<string, Set<() => void>>();
  private owned = 0;
  private seq = 0;
  private readonly log: Logger;
  private readonly shares: Shares;

  constructor(private readonly d: SpecializerDeps) {
    this.log = d.logger.child({ component: "specializer" });
    this.loadFailures = new LoadFailures(d.loadFailureTtlMs);
    this.shares = new Shares({
      table: d.table,
      now: d.now,
      local: (key) => this.slots.get(key),
      follow: (r, slot, owner, giveUpAt) => this.follow(r, slot, owner, giveUpAt),
      isUsable: (t) => this.isUsable(t),
    });
  }

  /** Specializations this replica asked the poolkeeper for and has no answer to yet. */
  get inFlight(): number {
    return this.owned;
  }

  /**
   * Capacity on a new instance for a lease that found every instance of the revision full (or
   * excluded). Resolves undefined when the instance is no longer usable (function changed, instance
   * died, claim expired): the caller looks again.
   */
  async acquire(r: Resolved, gateway: string, partial = false): Promise<Acquired | undefined> {
    const { namespace, name, revision } = r.fn.metadata;
    this.loadFailures.check(revisionKey(namespace, name, revision), this.d.now());
    const j = await this.join(r, "lease", r.fn.spec.maxInstances, gateway);
    if (j.kind === "full") {
      throw new FizzError(
        "NO_CAPACITY",
        `function ${namespace}/${name} has ${j.live} instances and ${j.busy} specializing of maxInstances ${r.fn.spec.maxInstances}, and none is free; retry`,
      );
    }
    const local = this.slotFor(r, j);
    const localMember = ++local.localMembers;
    if (partial && j.kind === "owner" && j.member === 1) {
      // The owner's own member needs no claim to know it has at least one slot: answer it as soon
      // as the instance is admitted, before the claim's finish (a Redis round trip); the gateway
      // asks for the rest with a top-up, answered once every member's share is recorded.
      const t = await local.early;
      if (t && this.isUsable(t)) {
        local.earlyGateway = gateway;
        const concurrency = instanceConcurrency(t, r);
        if (concurrency <= 1) return { t, slots: 1, outcome: "specialized" };
        return { t, slots: 1, outcome: "specialized", more: claimToken(r.fn.metadata.revision, j) };
      }
    }
    const out = await local.promise;
    const t = out.t;
    if (!t || !this.isUsable(t)) return undefined;
    const concurrency = instanceConcurrency(t, r);
    const outcome = j.kind === "owner" ? "specialized" : "joined";
    if (out.members) {
      this.shares.record(t, `${slotKey(r, j.slot)}#${j.owner}`, out.members, concurrency);
      return { t, slots: slotShare(concurrency, out.members.length, j.member), outcome };
    }
    // The claim could not be read back: split among the members this replica knows of.
    const slots = slotShare(concurrency, local.localMembers, localMember);
    recordGrant(t, gateway, slots, this.d.now());
    return { t, slots, outcome };
  }

  /**
   * minInstances: opens slots until live instances plus slots being specialized (on any replica)
   * reach `target`, and specializes each. Resolves, once they are all settled, with how many it
   * opened; rejects with the first failure.
   */
  async warm(r: Resolved, target: number): Promise<number> {
    const { namespace, name, revision } = r.fn.metadata;
    this.loadFailures.check(revisionKey(namespace, name, revision), this.d.now());
    const started: Array<Promise<SlotOutcome>> = [];
    for (let i = 0; i < target; i++) {
      const j = await this.join(r, "warm", target, "");
      if (j.kind !== "owner") break;
      started.push(this.slotFor(r, j).promise);
    }
    const results = await Promise.allSettled(started);
    const failed = results.find((x): x is PromiseRejectedResult => x.status === "rejected");
    if (failed) throw FizzError.from(failed.reason);
    return started.length;
  }

  /**
   * The rest of a lease answered early (`more`): the member's whole share (shares.ts). Undefined
   * when the share cannot be known: the caller then leases as usual.
   */
  async topUp(
    r: Resolved,
    req: { instanceId: string; claim: string },
    gateway: string,
  ): Promise<Acquired | undefined> {
    const got = await this.shares.topUp(r, req, gateway);
    return got && { ...got, outcome: "topUp" };
  }

  /** A new instance whose members' shares are not recorded yet: not to be leased from its free slots. */
  sharesPending(t: Tracked): boolean {
    return this.shares.isPending(t);
  }

  /** A "specialized" event for the function: leases waiting on another replica look now. */
  instanceAppeared(namespace: string, name: string): void {
    const set = this.sleepers.get(functionKey(namespace, name));
    if (set) for (const wake of [...set]) wake();
  }

  isUsable(t: Tracked): boolean {
    const current = this.d.catalog.fn(t.namespace, t.name);
    return this.d.table.get(t.id) === t && !t.draining && current?.metadata.revision === t.revision;
  }

  private async join(r: Resolved, mode: ClaimMode, limit: number, gateway: string) {
    const { namespace, name, revision } = r.fn.metadata;
    try {
      return await phase("scheduler.claim.join", () =>
        this.d.claims.join({
          fn: { namespace, name, revision },
          mode,
          capacity: effectiveConcurrency(r.fn, r.env),
          limit,
          live: this.d.table.live(namespace, name, revision).map((t) => t.id),
          gone: this.d.table.goneOf(namespace, name, this.d.now()),
          gateway,
          owner: `${this.d.replica}/${++this.seq}`,
          ttlMs: this.d.claimTtlMs,
        }),
      );
    } catch (err) {
      throw new FizzError(
        "UNAVAILABLE",
        `could not claim a specialization of ${namespace}/${name} in Redis: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  private slotFor(r: Resolved, j: Exclude<JoinResult, { kind: "full" }>): LocalSlot {
    const key = `${slotKey(r, j.slot)}#${j.owner}`;
    let local = this.slots.get(key);
    if (local) return local;
    let early!: (t: Tracked | undefined) => void;
    const earlyP = new Promise<Tracked | undefined>((resolve) => (early = resolve));
    const promise =
      j.kind === "owner" ? this.own(r, j.slot, j.owner, early) : this.follow(r, j.slot, j.owner);
    promise.then(
      (out) => early(out.t),
      () => early(undefined),
    );
    const slot: LocalSlot = { promise, early: earlyP, localMembers: 0, earlyGateway: undefined };
    promise.then(
      (out) => this.shares.recordEarlySplit(r, key, slot, out),
      () => undefined,
    );
    local = slot;
    this.slots.set(key, local);
    const forget = () => this.slots.delete(key);
    promise.then(forget, forget);
    return local;
  }

  /**
   * This replica opened the slot: specialize, then finish the claim so members everywhere learn.
   * `early` gets the admitted instance before the finish; until the finish recorded the members'
   * shares here the instance is shares-pending.
   */
  private async own(
    r: Resolved,
    slot: number,
    owner: string,
    early: (t: Tracked | undefined) => void,
  ): Promise<SlotOutcome> {
    const ref = refOf(r);
    this.owned++;
    try {
      let instance: Instance;
      try {
        instance = await phase("scheduler.specialize", () =>
          requestInstance(this.d, r, this.loadFailures, this.log),
        );
      } catch (err) {
        const fe = FizzError.from(err);
        await this.finish(ref, slot, owner, { state: "failed", error: fe.toWire() });
        throw fe;
      }
      const t = admitInstance(this.d, instance, r, this.log);
      if (t) this.shares.markPending(t);
      early(t);
      try {
        const rec = await this.finish(
          ref,
          slot,
          owner,
          t ? { state: "done", instance: t.instance } : { state: "dropped" },
        );
        // Recorded here, not only by the members: the owner's member may have been answered early.
        if (t && rec) {
          const concurrency = instanceConcurrency(t, r);
          this.shares.record(t, `${slotKey(r, slot)}#${owner}`, rec.members, concurrency);
        }
        return { t, members: rec?.members };
      } finally {
        if (t) this.shares.settled(t);
      }
    } finally {
      this.owned--;
    }
  }

  /**
   * Another replica opened the slot: read its claim until the instance is there (or, with
   * `giveUpAt`, until then on the scheduler's clock: the claim stays open until its TTL when its
   * owner died).
   */
  private async follow(
    r: Resolved,
    slot: number,
    owner: string,
    giveUpAt = Infinity,
  ): Promise<SlotOutcome> {
    const ref = refOf(r);
    const deadline = Date.now() + this.d.claimTtlMs + this.d.pollMs;
    const nothing: SlotOutcome = { t: undefined, members: undefined };
    for (;;) {
      let rec: SlotRecord | undefined | "unknown";
      try {
        rec = await this.d.claims.read(ref, slot);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, "could not read a specialization claim");
        rec = "unknown";
      }
      if (rec !== "unknown") {
        if (!rec || rec.owner !== owner) {
          this.log.info(
            { function: slotKey(r, slot), owner },
            "a specialization claim expired before its instance appeared; asking again",
          );
          return nothing;
        }
        if (rec.state === "dropped") return nothing;
        if (rec.state === "failed") {
          const fe = FizzError.fromWire(rec.error);
          this.loadFailures.remember(
            revisionKey(ref.namespace, ref.name, ref.revision),
            fe,
            this.d.now(),
          );
          throw fe;
        }
        if (rec.state === "done" && rec.instance)
          return { t: this.adopt(rec.instance), members: rec.members };
      }
      if (Date.now() >= deadline || this.d.now() >= giveUpAt) return nothing;
      await this.sleep(functionKey(ref.namespace, ref.name), this.d.pollMs);
    }
  }

  private adopt(instance: Instance): Tracked | undefined {
    const now = this.d.now();
    if (this.d.table.isTombstoned(instance.id, now)) return undefined;
    return this.d.table.add(instance, now);
  }

  private async finish(
    ref: FunctionRef,
    slot: number,
    owner: string,
    outcome: Parameters<ClaimStore["finish"]>[3],
  ): Promise<SlotRecord | undefined> {
    try {
      const rec = await phase("scheduler.claim.finish", () =>
        this.d.claims.finish(ref, slot, owner, outcome, FINISHED_SLOT_TTL_MS),
      );
      if (!rec)
        this.log.warn(
          { function: revisionKey(ref.namespace, ref.name, ref.revision), slot, owner },
          "specialization claim expired before the specialization finished; raise FIZZ_CLAIM_TTL_MS",
        );
      return rec;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "could not finish a specialization claim");
      return undefined;
    }
  }

  private sleep(key: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let set = this.sleepers.get(key);
      if (!set) this.sleepers.set(key, (set = new Set()));
      const wake = () => {
        cancel();
        set.delete(wake);
        if (set.size === 0 && this.sleepers.get(key) === set) this.sleepers.delete(key);
        resolve();
      };
      const cancel = this.d.after(ms, wake);
      set.add(wake);
    });
  }
}

function refOf(r: Resolved): FunctionRef {
  const { namespace, name, revision } = r.fn.metadata;
  return { namespace, name, revision };
}
