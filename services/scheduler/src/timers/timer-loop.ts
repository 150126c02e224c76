import { checkSchedule, type Invocation, type Schedule, type TimeTrigger } from "@fizz/events";
import { backgroundClock, backoffMs, retryUntil, type Clock, type Logger } from "@fizz/kit";
import type { TickRecord } from "./tick-record";
import { planTicks, timerInvocation } from "./ticks";
import type { TimerChange } from "./timer-catalog";

export type TickOutcome = "fired" | "catchup" | "failed" | "missed";

export interface TimerLoopOptions {
  /** Publishes on the invocation stream and resolves once the stream stored it. */
  publish(inv: Invocation): Promise<void>;
  record: TickRecord;
  /** Leadership (the election's isLeader), asked right before each publication. */
  isLeader(): boolean;
  catchupMs: number;
  /** Schedule time and timers; real by default, fake in unit tests. */
  clock?: Clock;
  logger: Logger;
  onOutcome?(outcome: TickOutcome, count: number): void;
}

interface Entry {
  trigger: TimeTrigger;
  schedule: Schedule | undefined;
  /** Why the schedule cannot run, when it cannot (the timer is then never armed). */
  failure: string | undefined;
  /** Ticks up to here (ms, inclusive) are settled: fired, or given up as missed. */
  after: number;
  /** Bumped whenever the entry is re-armed or disarmed; a step of an older generation stops. */
  gen: number;
  /** Cancels the pending step, if one is armed. */
  cancel: (() => void) | undefined;
  failures: number;
}

/** setTimeout's limit is ~24.8 days; far ticks are approached in steps of this. */
const MAX_DELAY_MS = 3_600_000;
/** A tick published later than this after its time is a catch-up (logged, counted apart). */
const LATE_MS = 1000;

const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;

/**
 * Fires timers while this replica leads. Each timer has one chain of steps: plan (ticks.ts), publish
 * the tick to fire, record it, sleep until the next tick. Becoming leader, or learning of a new or
 * changed timer while leading, starts the chain where the last leader stopped (the tick record in
 * Redis) or where the timer was last updated, whichever is later; losing leadership stops every
 * chain at once, and a step re-checks leadership right before it publishes.
 */
export class TimerLoop {
  private readonly entries = new Map<string, Entry>();
  private leading = false;
  private readonly busy = new Set<Promise<void>>();
  /** Aborted when leadership ends, so a retry's back-off does not hold up a stop. */
  private leadership = new AbortController();
  private readonly log: Logger;
  private readonly clock: Clock;

  constructor(private readonly o: TimerLoopOptions) {
    this.log = o.logger.child({ component: "timers" });
    this.clock = o.clock ?? backgroundClock;
  }

  get timers(): number {
    return this.entries.size;
  }

  /** Timers held but never fired because their schedule cannot run. */
  get failed(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.failure !== undefined) n++;
    return n;
  }

  /** Why a timer is not fired, if it is not (its schedule cannot run). */
  failureOf(namespace: string, name: string): string | undefined {
    return this.entries.get(keyOf(namespace, name))?.failure;
  }

  apply(change: TimerChange): void {
    if (change.op === "removed") {
      const key = keyOf(change.namespace, change.name);
      const e = this.entries.get(key);
      if (!e) return;
      this.disarm(e);
      this.entries.delete(key);
      this.log.info({ timer: key }, "timer removed");
      // Best effort: the record would expire anyway, and a new incarnation starts after it.
      if (this.leading)
        this.track(this.o.record.forget(change.namespace, change.name).catch(() => undefined));
      return;
    }
    const t = change.trigger;
    const key = keyOf(t.metadata.namespace, t.metadata.name);
    let schedule: Schedule | undefined;
    let failure: string | undefined;
    try {
      // The registry's own rule, so what it accepts runs and what slipped past it (written before
      // the rule, or straight into the store) is refused here the same way.
      schedule = checkSchedule(t.spec.cron, new Date(this.clock.now()));
    } catch (err) {
      failure = errMessage(err);
      this.log.error(
        { timer: key, cron: t.spec.cron, revision: t.metadata.revision, err: failure },
        "timer failed: its schedule cannot run; it is not fired until it is fixed, the other timers go on",
      );
    }
    const cur = this.entries.get(key);
    if (cur) this.disarm(cur);
    const e: Entry = cur ?? {
      trigger: t,
      schedule,
      failure,
      after: 0,
      gen: 0,
      cancel: undefined,
      failures: 0,
    };
    e.trigger = t;
    e.schedule = schedule;
    e.failure = failure;
    this.entries.set(key, e);
    this.log.info(
      { timer: key, cron: t.spec.cron, function: t.spec.function, revision: t.metadata.revision },
      cur ? "timer changed" : "timer added",
    );
    if (this.leading) this.arm(e);
  }

  /** This replica leads now: serve every timer. */
  lead(): void {
    this.leading = true;
    this.leadership = new AbortController();
    for (const e of this.entries.values()) this.arm(e);
  }

  /** Leadership is gone: no timer fires from here, at once. */
  follow(): void {
    this.leading = false;
    this.leadership.abort();
    for (const e of this.entries.values()) this.disarm(e);
  }

  async stop(): Promise<void> {
    this.follow();
    while (this.busy.size > 0) await Promise.allSettled([...this.busy]);
  }

  private arm(e: Entry): void {
    this.disarm(e);
    this.track(this.begin(e, e.gen));
  }

  private disarm(e: Entry): void {
    e.gen++;
    e.cancel?.();
    e.cancel = undefined;
    e.failures = 0;
  }

  private current(e: Entry, gen: number): boolean {
    return this.leading && e.gen === gen;
  }

  private track(p: Promise<void>): void {
    const tracked = p.catch((err: unknown) => this.log.error({ err }, "timer step failed"));
    this.busy.add(tracked);
    void tracked.finally(() => this.busy.delete(tracked));
  }

  /** Where this timer's ticks start counting: after its last recorded tick and its last update. */
  private async begin(e: Entry, gen: number): Promise<void> {
    const { namespace, name, updatedAt } = e.trigger.metadata;
    let last: number | undefined;
    try {
      // Until read, or this chain is over (leadership lost: RetryStopped; re-armed: not retried).
      last = await retryUntil(() => this.o.record.lastFired(namespace, name), {
        baseMs: 200,
        maxMs: 5000,
        signal: this.leadership.signal,
        retryable: () => this.current(e, gen),
        clock: this.clock,
        onRetry: ({ err, waitMs }) =>
          this.log.warn(
            { timer: keyOf(namespace, name), err: errMessage(err), retryInMs: waitMs },
            "could not read the timer's last tick; retrying",
          ),
      });
    } catch {
      return;
    }
    if (!this.current(e, gen)) return;
    const now = this.clock.now();
    // A tick from before the timer existed (or had this schedule) is owed to nobody. The
    // registry's clock may run ahead of ours, so its timestamp counts no later than now.
    const updated = Date.parse(updatedAt);
    e.after = Math.max(last ?? -Infinity, Math.min(Number.isNaN(updated) ? now : updated, now));
    await this.step(e, gen);
  }

  private async step(e: Entry, gen: number): Promise<void> {
    const { namespace, name } = e.trigger.metadata;
    const key = keyOf(namespace, name);
    while (this.current(e, gen) && e.schedule) {
      const now = this.clock.now();
      const plan = planTicks(e.schedule, e.after, now, this.o.catchupMs);
      if (plan.missed) {
        this.log.warn(
          {
            timer: key,
            firstMissed: new Date(plan.missed.first).toISOString(),
            count: plan.missed.count,
            catchUp: plan.fire === undefined ? null : new Date(plan.fire).toISOString(),
            catchupMs: this.o.catchupMs,
          },
          "timer ticks missed (no leader, or running late) are skipped; at most the latest fires",
        );
        this.o.onOutcome?.("missed", plan.missed.count === "many" ? 1 : plan.missed.count);
      }
      if (plan.fire === undefined) {
        e.after = Math.max(e.after, now);
        if (plan.next === undefined) {
          this.log.info({ timer: key, cron: e.trigger.spec.cron }, "timer has no further ticks");
          return;
        }
        const delay = Math.min(plan.next - now, MAX_DELAY_MS);
        e.cancel = this.clock.after(delay, () => this.track(this.step(e, gen)));
        return;
      }
      // The missed ticks are settled (reported once); the one to fire is not, until published.
      e.after = Math.max(e.after, plan.fire - 1);
      const fire = plan.fire;
      if (!this.o.isLeader()) return; // Expired under us; the election's onDeposed follows.
      try {
        await this.o.publish(timerInvocation(e.trigger, fire, now));
      } catch (err) {
        if (!this.current(e, gen)) return;
        // Not retryUntil: the retry re-plans (the tick may have left the catch-up window, or a
        // later one become due), so it goes round the step, backed off on the entry's count.
        const wait = backoffMs(e.failures++, 200, 5000);
        this.log.warn(
          {
            timer: key,
            tick: new Date(fire).toISOString(),
            err: errMessage(err),
            retryInMs: wait,
          },
          "could not publish a timer invocation; retrying while the tick is within the catch-up window",
        );
        this.o.onOutcome?.("failed", 1);
        e.cancel = this.clock.after(wait, () => this.track(this.step(e, gen)));
        return;
      }
      e.failures = 0;
      e.after = Math.max(e.after, fire);
      const late = now - fire > LATE_MS;
      this.o.onOutcome?.(late ? "catchup" : "fired", 1);
      const tick = new Date(fire).toISOString();
      if (late) this.log.info({ timer: key, tick }, "fired a missed timer tick (catch-up)");
      else this.log.debug({ timer: key, tick }, "timer fired");
      // Published is what counts; the record only tells a next leader where to resume, and the
      // callId makes a repeat of this tick a duplicate the stream drops.
      this.track(
        this.o.record
          .recordFired(namespace, name, fire)
          .catch((err: unknown) =>
            this.log.warn(
              { timer: key, tick, err: errMessage(err) },
              "could not record a fired tick",
            ),
          ),
      );
    }
  }
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
