import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { backoffMs } from "./backoff";
import { backgroundClock, type Clock } from "./clock";
import { LockConflict, openKvLock, type LeaderLock } from "./leader-kv-lock";
import type { Logger } from "./logger";
import type { NatsConnection } from "./nats";

/**
 * The one leader election of the platform (the scheduler's timers, the kubewatcher's informers).
 *
 * The lock is the key `leader` in a NATS JetStream KV bucket whose entries expire a fixed time
 * after their last write: the bucket's max age, counted by the NATS server's clock alone, and never
 * less than the `ttlMs` of a contender that opened the bucket (see "The bucket's max age" below).
 * A contender takes the lock with create-if-absent and keeps it by rewriting it every ttl/4 with
 * the revision it last wrote (compare-and-set), so only the holder can renew, and a holder that
 * stops renewing loses the key when it expires.
 *
 * Guarantees:
 * - At most one leader acts at a time. Leadership is counted from when an acknowledged write was
 *   *sent*: the server stored it after that, and the bucket's max age is at least our ttl, so the
 *   key cannot expire before `sent + ttl` on the server's clock. A leader holds leadership until
 *   `sent + ttl − margin` on its own clock, and
 *   `isLeader()` turns false then, whether or not anything answers: a watchdog timer ends it
 *   (`onDeposed`) even while a renewal hangs because NATS stopped answering. The margin (a fifth of
 *   the TTL) covers the two clocks running at different rates and a late timer.
 *   Callers check `isLeader()` right before each action and stop acting in `onDeposed`.
 * - A renewal the server answered too late (we had given up on it) is recognised as our own on
 *   the next compare-and-set conflict and taken up again; it never extends leadership by itself.
 * - `stop()` ends leadership locally first (`onDeposed`), then deletes the key, only if it still
 *   holds our revision: a follower takes over at its next poll, not after the TTL, and a late
 *   release never ends a successor's lock.
 * - Followers poll every ttl/4. A follower takes over within ttl/4 (plus one round trip) of a
 *   graceful stop, and within maxAge + ttl/4 of the last renewal of a leader that died or lost
 *   NATS, where maxAge is the bucket's (its own ttl unless a contender with a longer one opened the
 *   bucket); the old leader has stepped down locally at 4/5 of its own TTL, before that.
 * - `onElected` and `onDeposed` that throw are logged and contained: the election goes on. A
 *   contender whose `onElected` throws cannot do the leader's job, so it steps down at once
 *   (`onDeposed`, for the caller to undo a partial start), releases the key for another replica
 *   and contends again (which retries `onElected`) after a back-off: one poll interval after the
 *   first failure, growing exponentially with each failure in a row up to a minute, and reset once
 *   `onElected` succeeds. So a contender that cannot lead does not flap every poll.
 * - Not guaranteed: an action already past its `isLeader()` check when the process stalls may
 *   land after a successor started. What leaders do is idempotent for that reason (timer ticks
 *   and watch events have deterministic call ids the stream deduplicates; the kubewatcher's
 *   cursors are compare-and-set).
 *
 * The bucket's max age is only ever raised by a contender, never lowered. A contender counts its
 * validity from its own ttl, which is safe while the key lives at least that long: while the max
 * age is at least the ttl of every contender. Lowering it under a leader with a longer ttl (in a
 * rollout that shortens the TTL the old replicas still run the longer one) would let the key
 * expire while that leader still acts, and a second leader take over. So a contender whose ttl is
 * above the bucket's max age raises it (and re-reads it, in case another contender's raise to a
 * lower value landed last); one whose ttl is below keeps it and only takes over more slowly after
 * a failure. The duplicate window is kept at or below the max age (nats-server refuses a stream
 * otherwise). Not guaranteed: stream updates have no compare-and-set, so of two contenders raising
 * at the same instant to different values, the lower may land last, after the other re-read.
 *
 * Lowering a TTL (FIZZ_TIMER_LEASE_MS, FIZZ_KUBEWATCHER_LEADER_TTL_MS) takes an operator once no
 * replica runs with the old, longer TTL (until then the old max age only slows takeovers): lower
 * the bucket's max age and duplicate window to the new TTL, no lower, e.g.
 * `nats stream edit KV_<bucket> --max-age=5s --dupe-window=5s`; or delete the bucket
 * (`nats stream rm KV_<bucket>`) while no replica of the service runs, and the first to start
 * creates it with its TTL. Deleting it under running replicas stops the election until they
 * restart.
 *
 * Why NATS and not Redis: every service has NATS (the kubewatcher has no Redis), and the timers
 * act on the bus anyway, so leadership lives where the work is published.
 *
 * The lock itself (its interface and the KV bucket behind it) is in leader-kv-lock.ts.
 */

/** The longest wait before contending again after `onElected` failed (unless a poll is longer). */
const MAX_ELECTED_BACKOFF_MS = 60_000;

interface CommonOptions {
  /** This contender's id, the key's value while it leads; unique per process. */
  id: string;
  ttlMs: number;
  logger: Logger;
  /** Names the election in logs (e.g. "timers"). */
  name?: string;
  /** Real time by default, its timers unref'd: the election must not hold up an exit. */
  clock?: Clock;
  onElected(): void;
  onDeposed(reason: string): void;
}

export type LeaderElectionOptions = CommonOptions &
  (
    | { js: JetStreamClient; bucket: string }
    | { nc: NatsConnection; bucket: string }
    | { lock: LeaderLock }
  );

export class LeaderElection {
  private lock: LeaderLock | undefined;
  /** Our last write's revision, while the key may hold it; undefined: create next. */
  private revision: number | undefined;
  private leading = false;
  private validUntil = 0;
  private cancelWatchdog: (() => void) | undefined;
  /** `onElected` failures in a row (reset once it succeeds): each backs off longer. */
  private electedFailures = 0;
  /** After `onElected` failed: no contending before this (our clock). */
  private contendAfter = 0;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly everyMs: number;
  private readonly validMs: number;

  constructor(private readonly o: LeaderElectionOptions) {
    this.clock = o.clock ?? backgroundClock;
    this.log = o.logger.child({ component: "leader", election: o.name ?? "leader" });
    this.everyMs = Math.max(25, Math.floor(o.ttlMs / 4));
    this.validMs = o.ttlMs - Math.ceil(o.ttlMs / 5);
  }

  /** Opens the bucket (may be retried when it fails) and starts contending. */
  async start(): Promise<void> {
    if (this.loop || this.abort.signal.aborted) return;
    this.lock ??= await this.openLock();
    // run() contains its own failures; this is the last guard against an unhandled rejection.
    this.loop = this.run(this.lock).catch((err: unknown) => {
      this.log.error({ err: message(err) }, "the leader election stopped");
      this.depose("the leader election stopped");
    });
  }

  private async openLock(): Promise<LeaderLock> {
    const o = this.o;
    if ("lock" in o) return o.lock;
    const js = "js" in o ? o.js : jetstream(o.nc);
    return openKvLock({ js, bucket: o.bucket, ttlMs: o.ttlMs }, this.log);
  }

  /** True while this contender holds the lock and its validity has not run out. */
  isLeader(): boolean {
    return this.leading && this.clock.now() < this.validUntil;
  }

  /** Stops contending; when leading, steps down and deletes the key so a follower takes over. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    this.depose("stopping");
    const revision = this.revision;
    this.revision = undefined;
    if (!this.lock || revision === undefined) return;
    try {
      await this.timed(this.lock.release(revision));
      this.log.info({ id: this.o.id }, "leader lock released");
    } catch (err) {
      this.log.warn({ err: message(err) }, "could not release the leader lock; it expires");
    }
  }

  private async run(lock: LeaderLock): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const sentAt = this.clock.now();
      let again = false;
      try {
        again = await this.attempt(lock, sentAt);
      } catch (err) {
        // Not a NATS failure (attempt() handles those): a bug must not end the contending.
        this.log.error({ err: message(err) }, "leader election attempt failed");
      }
      if (signal.aborted) return;
      // Attempts start every interval: one that timed out is followed at once, so a single
      // lost answer costs a leader one interval of its validity, not two. After `onElected`
      // failed, not before the back-off is over.
      if (again) continue;
      const now = this.clock.now();
      await this.clock.sleep(
        Math.max(this.everyMs - (now - sentAt), this.contendAfter - now),
        signal,
      );
    }
  }

  /** One claim or renewal; true when the next should follow at once. */
  private async attempt(lock: LeaderLock, sentAt: number): Promise<boolean> {
    const rev = this.revision;
    try {
      const next = await this.timed(
        rev === undefined ? lock.create(this.o.id) : lock.update(this.o.id, rev),
      );
      // Kept even when stopping, so stop() deletes what we just wrote.
      this.revision = next;
      if (!this.abort.signal.aborted && !this.held(sentAt)) await this.resign(lock);
      return false;
    } catch (err) {
      if (err instanceof LockConflict) return this.conflict(lock);
      if (this.leading) {
        // Leading goes on until the validity runs out; the watchdog ends it then.
        this.log.warn({ err: message(err) }, "could not renew the leader lock");
      } else this.log.debug({ err: message(err) }, "could not claim the leader lock");
      return false;
    }
  }

  /**
   * Ours after all (a write of ours that answered too late) is taken up and renewed at once; a
   * key anyone else wrote deposes us. True when the renewal should follow at once.
   */
  private async conflict(lock: LeaderLock): Promise<boolean> {
    this.revision = undefined;
    const cur = await this.timed(lock.read()).catch(() => undefined);
    if (cur?.value === this.o.id) {
      this.revision = cur.revision;
      return true;
    }
    this.depose("another contender holds the lock");
    return false;
  }

  /** Records a write that holds the lock; false when `onElected` threw and we stepped down. */
  private held(sentAt: number): boolean {
    this.validUntil = sentAt + this.validMs;
    this.cancelWatchdog?.();
    this.cancelWatchdog = this.clock.after(Math.max(0, this.validUntil - this.clock.now()), () =>
      this.depose("the lock could not be renewed in time"),
    );
    if (this.leading) return true;
    this.leading = true;
    this.log.info({ id: this.o.id }, "elected leader");
    try {
      this.o.onElected();
      this.electedFailures = 0;
      this.contendAfter = 0;
      return true;
    } catch (err) {
      const waitMs = backoffMs(
        this.electedFailures++,
        this.everyMs,
        Math.max(this.everyMs, MAX_ELECTED_BACKOFF_MS),
      );
      this.contendAfter = this.clock.now() + waitMs;
      this.log.error(
        { err: message(err), retryInMs: Math.max(waitMs, this.everyMs) },
        "onElected failed; stepping down",
      );
      this.depose("onElected failed");
      return false;
    }
  }

  /** Deletes our key after stepping down, so a follower takes over at its next poll. */
  private async resign(lock: LeaderLock): Promise<void> {
    const revision = this.revision;
    this.revision = undefined;
    if (revision === undefined) return;
    try {
      await this.timed(lock.release(revision));
    } catch (err) {
      this.log.warn({ err: message(err) }, "could not release the leader lock; it expires");
    }
  }

  /** Ends leadership; `isLeader()` is false before `onDeposed` runs, whatever it does. */
  private depose(reason: string): void {
    this.cancelWatchdog?.();
    this.cancelWatchdog = undefined;
    this.validUntil = 0;
    if (!this.leading) return;
    this.leading = false;
    this.log.info({ id: this.o.id, reason }, "no longer the leader");
    try {
      this.o.onDeposed(reason);
    } catch (err) {
      this.log.error({ err: message(err) }, "onDeposed failed");
    }
  }

  /** Rejects after a renewal interval: a hung call must not hold the loop (it may still land). */
  private async timed<T>(p: Promise<T>): Promise<T> {
    let cancel: (() => void) | undefined;
    try {
      return await Promise.race([
        p,
        new Promise<never>((_, reject) => {
          cancel = this.clock.after(this.everyMs, () =>
            reject(new Error(`NATS did not answer within ${this.everyMs} ms`)),
          );
        }),
      ]);
    } finally {
      cancel?.();
    }
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
