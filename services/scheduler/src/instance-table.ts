import type { Instance } from "@fizz/events";

/**
 * The scheduler's in-memory view of specialized instances, indexed by id and by function. The
 * lease path reads only this (no Redis, no NATS); Redis (route-cache.ts) is its durable copy and
 * the poolkeeper's list the truth about what exists (reconcile.ts).
 */

/**
 * A lease granted to a gateway counts as `slots` of load until that gateway reports on the
 * instance. A gateway that took a lease and never used it never reports it either, so a grant
 * stops counting after this long (a few report periods) instead of marking the instance busy forever.
 */
export const PENDING_GRANT_TTL_MS = 5000;

/** Ids retired or dead are remembered this long, so a late event or an old list cannot resurrect them. */
export const TOMBSTONE_TTL_MS = 60_000;

export interface GatewayUsage {
  /** In flight as last reported by this gateway. */
  inFlight: number;
  /** Slots granted to this gateway since its last report on the instance. */
  pending: number;
  grantedAt: number;
  reportedAt: number;
}

export interface Tracked {
  readonly instance: Instance;
  readonly id: string;
  readonly namespace: string;
  readonly name: string;
  readonly revision: number;
  /** When this scheduler learned of the instance (specialized, rebuilt or adopted). */
  readonly addedAt: number;
  /**
   * Idle clock: starts when this scheduler learned of the instance (after a restart too, so a
   * scheduler restart never reaps instances before their gateways had a chance to report) and
   * moves on every grant and every report of use.
   */
  lastUsedAt: number;
  draining: boolean;
  drainStartedAt: number;
  /** Cancels the pending end of the drain period (set while draining). */
  cancelDrain: (() => void) | undefined;
  readonly usage: Map<string, GatewayUsage>;
}

export function functionKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export function revisionKey(namespace: string, name: string, revision: number): string {
  return `${namespace}/${name}/${revision}`;
}

export class InstanceTable {
  private readonly byId = new Map<string, Tracked>();
  private readonly byFunction = new Map<string, Map<string, Tracked>>();
  /** id -> until when, and the function it belonged to ("" when not known here). */
  private readonly tombstones = new Map<string, { until: number; fn: string }>();
  /**
   * Ids a gateway reported failed: never handed out or adopted again, however late an event or a
   * poolkeeper list names them, until the poolkeeper confirms they are gone (absolve).
   */
  private readonly condemned = new Map<string, string | undefined>();

  /** Adds a specialized instance; returns the existing entry when the id is known. Instances without a function are refused. */
  add(instance: Instance, now: number): Tracked | undefined {
    const known = this.byId.get(instance.id);
    if (known) return known;
    const fn = instance.function;
    if (instance.state !== "specialized" || fn === undefined) return undefined;
    const t: Tracked = {
      instance,
      id: instance.id,
      namespace: fn.namespace,
      name: fn.name,
      revision: fn.revision,
      addedAt: now,
      lastUsedAt: now,
      draining: false,
      drainStartedAt: 0,
      cancelDrain: undefined,
      usage: new Map(),
    };
    this.byId.set(t.id, t);
    const key = functionKey(t.namespace, t.name);
    let group = this.byFunction.get(key);
    if (!group) this.byFunction.set(key, (group = new Map<string, Tracked>()));
    group.set(t.id, t);
    return t;
  }

  /** Removes the instance and tombstones its id; returns what was removed. */
  remove(id: string, now: number): Tracked | undefined {
    const t = this.byId.get(id);
    const fn = t ? functionKey(t.namespace, t.name) : (this.tombstones.get(id)?.fn ?? "");
    this.tombstones.set(id, { until: now + TOMBSTONE_TTL_MS, fn });
    if (!t) return undefined;
    t.cancelDrain?.();
    t.cancelDrain = undefined;
    this.byId.delete(id);
    const key = functionKey(t.namespace, t.name);
    const group = this.byFunction.get(key);
    group?.delete(id);
    if (group && group.size === 0) this.byFunction.delete(key);
    return t;
  }

  get(id: string): Tracked | undefined {
    return this.byId.get(id);
  }

  isTombstoned(id: string, now: number): boolean {
    if (this.condemned.has(id)) return true;
    const until = this.tombstones.get(id)?.until;
    return until !== undefined && until > now;
  }

  /** `fn` ("<ns>/<name>") is the function a gateway said the id belonged to, when we did not know it. */
  condemn(id: string, fn?: string): void {
    this.condemned.set(id, fn);
  }

  condemnedIds(): string[] {
    return [...this.condemned.keys()];
  }

  /** The function the reporting gateway named for a condemned id we did not know, if any. */
  condemnedFor(id: string): string | undefined {
    return this.condemned.get(id);
  }

  isCondemned(id: string): boolean {
    return this.condemned.has(id);
  }

  /** The poolkeeper says the instance is gone; its id is an ordinary tombstone from now on. */
  absolve(id: string): void {
    this.condemned.delete(id);
  }

  sweepTombstones(now: number): void {
    for (const [id, { until }] of this.tombstones) if (until <= now) this.tombstones.delete(id);
  }

  /** Ids of the function's instances known gone (retired, dead) lately, condemned ones too. */
  goneOf(namespace: string, name: string, now: number): string[] {
    const key = functionKey(namespace, name);
    const out: string[] = [];
    for (const [id, { until, fn }] of this.tombstones) if (fn === key && until > now) out.push(id);
    for (const [id, f] of this.condemned) if (f === key && !this.tombstones.has(id)) out.push(id);
    return out;
  }

  ofFunction(namespace: string, name: string): Iterable<Tracked> {
    return this.byFunction.get(functionKey(namespace, name))?.values() ?? [];
  }

  functions(): Array<{ namespace: string; name: string; instances: Tracked[] }> {
    return [...this.byFunction.values()].flatMap((group) => {
      const first = group.values().next().value;
      return first
        ? [{ namespace: first.namespace, name: first.name, instances: [...group.values()] }]
        : [];
    });
  }

  all(): Iterable<Tracked> {
    return this.byId.values();
  }

  get size(): number {
    return this.byId.size;
  }

  /** Instances of this revision that may still be handed out (not draining). */
  liveCount(namespace: string, name: string, revision: number): number {
    return this.live(namespace, name, revision).length;
  }

  live(namespace: string, name: string, revision: number): Tracked[] {
    const out: Tracked[] = [];
    for (const t of this.ofFunction(namespace, name))
      if (t.revision === revision && !t.draining) out.push(t);
    return out;
  }
}

/** Estimated requests in flight: what each gateway last reported plus what was granted to it since. */
export function loadOf(t: Tracked, now: number): number {
  let load = 0;
  for (const u of t.usage.values()) {
    load += u.inFlight;
    if (now - u.grantedAt < PENDING_GRANT_TTL_MS) load += u.pending;
  }
  return load;
}

/** Slots still free on the instance: its concurrency less the estimated load. */
export function freeSlots(t: Tracked, concurrency: number, now: number): number {
  return concurrency - loadOf(t, now);
}

export function recordGrant(t: Tracked, gateway: string, slots: number, now: number): void {
  const u = usageOf(t, gateway);
  u.pending += slots;
  u.grantedAt = now;
  t.lastUsedAt = Math.max(t.lastUsedAt, now);
}

/**
 * A gateway's report replaces what we knew from it. A report assembled just before a grant resets
 * that grant's pending slots early; that only skews the least-loaded preference for a second, it
 * never over-commits an instance (the runtime enforces its own limit).
 */
export function recordReport(
  t: Tracked,
  gateway: string,
  item: { inFlight: number; lastUsedAt: number },
  now: number,
): void {
  const u = usageOf(t, gateway);
  u.inFlight = item.inFlight;
  u.pending = 0;
  u.reportedAt = now;
  // The gateway's clock may run ahead of ours; a use "in the future" must not keep an instance forever.
  const used = item.inFlight > 0 ? now : Math.min(item.lastUsedAt, now);
  t.lastUsedAt = Math.max(t.lastUsedAt, used);
}

function usageOf(t: Tracked, gateway: string): GatewayUsage {
  let u = t.usage.get(gateway);
  if (!u) t.usage.set(gateway, (u = { inFlight: 0, pending: 0, grantedAt: 0, reportedAt: 0 }));
  return u;
}
