import { realClock, type Clock } from "@fizz/kit";
import { RequestStats } from "../front-door/request-stats";
import { StatsRing } from "./stats-ring";

/**
 * How a call reached the function: `http` through the front door, the others are the bus's
 * invocation sources (shared/events invocation.ts; message-queue triggers count as `mqt`).
 */
export const BUS_TRIGGERS = ["async", "mqt", "timer", "watch"] as const;
export type BusTrigger = (typeof BUS_TRIGGERS)[number];

/** Label value of every function past the cap. */
export const OTHER = "_other";

export class BusStats extends RequestStats {
  /** Failed attempts sent back to the stream for another try. */
  retries = 0;
  /** Calls given up on and published to FIZZ_DEAD. */
  deadLetters = 0;
}

/**
 * Wall-clock time from a performance.now() reading the caller already has: the front door reads
 * the monotonic clock once per request for its duration, and a second clock read per request
 * (Date.now) cost as much as all the counting together. The offset to the wall clock is taken
 * again at most every `resyncMs`, so a stepped system clock moves the buckets within a second.
 */
export class WallClock {
  private offset = 0;
  private syncedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly clock: Pick<Clock, "now">,
    private readonly resyncMs = 1000,
  ) {}

  at(perfNow: number): number {
    if (perfNow - this.syncedAt >= this.resyncMs || perfNow < this.syncedAt) {
      this.offset = this.clock.now() - perfNow;
      this.syncedAt = perfNow;
    }
    return perfNow + this.offset;
  }
}

/**
 * One function's numbers on this gateway. It is the function's HTTP RequestStats itself (so the
 * front door's hot path stays one `record` on the object its route holds), plus a RequestStats per
 * bus trigger, made on first use, and the hour of history `gateway.stats` answers with.
 */
export class FunctionStats extends RequestStats {
  readonly history = new StatsRing();
  private readonly bus: (BusStats | undefined)[] = [undefined, undefined, undefined, undefined];

  constructor(
    readonly namespace: string,
    readonly name: string,
    private readonly clock: WallClock,
    /** Past the cap: counted under `_other`, no history (it would be everyone's). */
    readonly folded = false,
  ) {
    super();
  }

  /** An HTTP answer; `at` is the performance.now() reading the duration was taken from. */
  override record(status: number, seconds: number, at = performance.now()): void {
    super.record(status, seconds);
    if (!this.folded) this.history.record(this.clock.at(at), status, seconds * 1000);
  }

  /** A bus call's answer (status 0: none came). */
  recordBus(trigger: BusTrigger, status: number, seconds: number): void {
    this.busStats(trigger).record(status, seconds);
    if (!this.folded) this.history.record(this.clock.at(performance.now()), status, seconds * 1000);
  }

  busStats(trigger: BusTrigger): BusStats {
    const i = BUS_TRIGGERS.indexOf(trigger);
    return (this.bus[i] ??= new BusStats());
  }

  /** Per trigger, `http` first; triggers never used are left out. */
  *triggers(): Generator<[trigger: string, stats: RequestStats]> {
    if (this.count > 0) yield ["http", this];
    for (let i = 0; i < BUS_TRIGGERS.length; i++) {
      const s = this.bus[i];
      if (s !== undefined) yield [BUS_TRIGGERS[i]!, s];
    }
  }

  *busTriggers(): Generator<[trigger: BusTrigger, stats: BusStats]> {
    for (let i = 0; i < BUS_TRIGGERS.length; i++) {
      const s = this.bus[i];
      if (s !== undefined) yield [BUS_TRIGGERS[i]!, s];
    }
  }
}

/**
 * Every function this gateway has served, with bounded cardinality: past `maxFunctions` distinct
 * functions, new ones share one `_other` entry (Prometheus series namespace="_other",
 * function="_other"; no history). A deleted function's entry is forgotten (its series disappear
 * at the next scrape) and marked retired, so whoever holds it takes a fresh one.
 */
export class FunctionStatsTable {
  private readonly byKey = new Map<string, FunctionStats>();
  private other: FunctionStats | undefined;
  private readonly clock: WallClock;

  /** `resyncMs`: see WallClock (0 in tests whose fake clock jumps). */
  constructor(
    readonly maxFunctions: number,
    clock: Pick<Clock, "now"> = realClock,
    resyncMs = 1000,
  ) {
    this.clock = new WallClock(clock, resyncMs);
  }

  of(namespace: string, name: string): FunctionStats {
    const key = `${namespace}/${name}`;
    const s = this.byKey.get(key);
    if (s !== undefined) return s;
    if (this.byKey.size >= this.maxFunctions)
      return (this.other ??= new FunctionStats(OTHER, OTHER, this.clock, true));
    const fresh = new FunctionStats(namespace, name, this.clock);
    this.byKey.set(key, fresh);
    return fresh;
  }

  /** The function was deleted: its series go, and a re-created one starts from zero. */
  forget(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const s = this.byKey.get(key);
    if (s === undefined) return;
    s.retired = true;
    this.byKey.delete(key);
  }

  get size(): number {
    return this.byKey.size;
  }

  /** Every entry, `_other` last (when anything folded). */
  *all(): Generator<FunctionStats> {
    yield* this.byKey.values();
    if (this.other !== undefined) yield this.other;
  }

  /** The named function (unfolded) or undefined. */
  get(namespace: string, name: string): FunctionStats | undefined {
    return this.byKey.get(`${namespace}/${name}`);
  }
}
