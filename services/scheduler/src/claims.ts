import type { FizzError, FunctionRef, Instance } from "@fizz/events";

/**
 * Specialization claims: how scheduler replicas agree on how many instances of a function
 * revision are being created, so that two replicas serving one burst create one instance per need,
 * not one each (DESIGN.md "Single flight across scheduler replicas").
 *
 * A revision has numbered slots. A slot is one instance being specialized: its owner (the replica
 * that opened it) calls the poolkeeper; lease requests that need capacity while it is open join it
 * as members, up to the instance's concurrency, wherever they arrive. When the instance is there,
 * its concurrency is split between the members (slotShare), so the slots granted on a new
 * instance never add up to more than its concurrency. Joining and opening are one atomic step in
 * Redis (redis-claims.ts); an open slot expires after the claim TTL, so a crashed owner's claim
 * goes away and its members ask again.
 */

/** An error as a claim records it: FizzError.toWire(), rebuilt with FizzError.fromWire(). */
export type ClaimError = ReturnType<FizzError["toWire"]>;

export type ClaimMode =
  /** A lease request: join an open slot with room, else open one (as its first member). */
  | "lease"
  /** Keeping minInstances: open a slot with no member, never join one. */
  | "warm";

export interface JoinRequest {
  fn: FunctionRef;
  mode: ClaimMode;
  /** Members a slot takes: the concurrency of the instance it will create. */
  capacity: number;
  /** Live instances plus busy slots may not reach past this (maxInstances, or minInstances to warm). */
  limit: number;
  /** Ids of the revision's live instances known here, so a finished slot is not counted twice. */
  live: readonly string[];
  /** Ids of its instances known gone here: a finished slot naming one no longer counts. */
  gone: readonly string[];
  /** The member's gateway (mode "lease"), recorded so every replica can account its share. */
  gateway: string;
  /** A token unique to this claim attempt, naming the owner if a slot is opened. */
  owner: string;
  ttlMs: number;
}

export type JoinResult =
  /** This caller opened slot `slot` and must specialize; `member` is 1 in lease mode, 0 when warming. */
  | { kind: "owner"; slot: number; owner: string; member: number }
  /** This caller is member number `member` (1-based) of another caller's open slot. */
  | { kind: "member"; slot: number; owner: string; member: number }
  /** Live instances and busy slots already reach the limit, and no open slot has room. */
  | { kind: "full"; live: number; busy: number };

export type SlotState =
  | "open"
  /** The instance exists: `instance` is set. */
  | "done"
  /** The specialization failed: members get `error`. */
  | "failed"
  /** The instance is not wanted any more (the function changed meanwhile): members ask again. */
  | "dropped";

export interface SlotRecord {
  state: SlotState;
  owner: string;
  /** The members' gateways in member order (index 0 is member 1). */
  members: string[];
  instance?: Instance;
  error?: ClaimError;
}

export interface ClaimStore {
  join(req: JoinRequest): Promise<JoinResult>;
  /** Resolves undefined when the slot is no longer this owner's (it expired, maybe reopened). */
  finish(
    fn: FunctionRef,
    slot: number,
    owner: string,
    outcome:
      | { state: "done"; instance: Instance }
      | { state: "failed"; error: ClaimError }
      | { state: "dropped" },
    ttlMs: number,
  ): Promise<SlotRecord | undefined>;
  read(fn: FunctionRef, slot: number): Promise<SlotRecord | undefined>;
}

/**
 * How long a finished slot stays readable: members on other replicas poll for it, and until their
 * replica has seen the new instance it still counts against maxInstances/minInstances there.
 */
export const FINISHED_SLOT_TTL_MS = 5000;

/**
 * Member `member` (1-based) of `members`: the instance's concurrency split as evenly as possible,
 * the remainder going to the first members. Every member gets at least one slot.
 */
export function slotShare(concurrency: number, members: number, member: number): number {
  if (members <= 0) return concurrency;
  const base = Math.floor(concurrency / members);
  const extra = member >= 1 && member <= concurrency % members ? 1 : 0;
  return Math.max(1, base + extra);
}

/** Names a member of a claim slot in a lease answered early: `<revision>:<slot>:<member>:<owner>`. */
export function claimToken(
  revision: number,
  j: { slot: number; member: number; owner: string },
): string {
  return `${revision}:${j.slot}:${j.member}:${j.owner}`;
}

export function parseClaimToken(
  token: string,
): { revision: number; slot: number; member: number; owner: string } | undefined {
  const m = /^(\d+):(\d+):(\d+):(.+)$/.exec(token);
  if (!m) return undefined;
  const member = Number(m[3]);
  if (member < 1) return undefined;
  return { revision: Number(m[1]), slot: Number(m[2]), member, owner: m[4] as string };
}
