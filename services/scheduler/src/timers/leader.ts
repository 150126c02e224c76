import { sleep, type Logger, type Redis } from "@fizz/kit";

/**
 * Claims the lease for its holder: `SET NX PX` when nobody holds it, a renewal (`PEXPIRE`) only
 * when the value is still ours — never over another replica's value. One script for both, so a
 * replica whose renewal answered too late (it already gave leadership up locally) takes its own
 * lease back at once instead of waiting for it to expire. Answers {1, ttl} or {0, pttl of the
 * other holder's lease}.
 */
const CLAIM = `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(ARGV[2])}
end
if cur then return {0, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')
return {1, tonumber(ARGV[2])}`;

/** Deletes the lease only if it is still ours: a late release never ends a successor's lease. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export interface LeaderEvents {
  elected(): void;
  lost(reason: string): void;
}

export interface LeaderLeaseOptions {
  redis: Redis;
  key: string;
  /** This replica's id, the lease's value. */
  holder: string;
  ttlMs: number;
  now: () => number;
  logger: Logger;
}

/**
 * A leader lease in Redis: at most one holder at a time, renewed every ttl/3. Leadership is
 * counted from when a claim was *sent*, so it ends locally (`isLeader()` false, `lost` told) no
 * later than the key can expire in Redis, even when Redis stops answering: a replica that cannot
 * renew stops acting before another one can take over. A margin covers clock-rate differences.
 */
export class LeaderLease {
  private leading = false;
  private validUntil = 0;
  private expiry: NodeJS.Timeout | undefined;
  private readonly stopSignal = new AbortController();
  private loop: Promise<void> | undefined;
  private events: LeaderEvents | undefined;
  private readonly log: Logger;

  constructor(private readonly o: LeaderLeaseOptions) {
    this.log = o.logger.child({ component: "timer-leader" });
  }

  isLeader(): boolean {
    return this.leading && this.o.now() < this.validUntil;
  }

  start(events: LeaderEvents): void {
    this.events = events;
    this.loop ??= this.run();
  }

  /** Stops claiming and, when leading, hands the lease back so a follower takes over at once. */
  async stop(): Promise<void> {
    this.stopSignal.abort();
    await this.loop;
    const was = this.leading;
    this.lose("stopping");
    if (!was) return;
    try {
      await withTimeout(
        this.o.redis.eval(RELEASE, 1, this.o.key, this.o.holder),
        this.renewEveryMs(),
      );
      this.log.info({ holder: this.o.holder }, "timer lease released");
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message },
        "could not release the timer lease; it expires",
      );
    }
  }

  private renewEveryMs(): number {
    return Math.max(50, Math.floor(this.o.ttlMs / 3));
  }

  private async run(): Promise<void> {
    const signal = this.stopSignal.signal;
    const every = this.renewEveryMs();
    const margin = Math.min(1000, Math.floor(this.o.ttlMs / 10));
    while (!signal.aborted) {
      let wait = every;
      const sentAt = this.o.now();
      try {
        const reply = (await withTimeout(
          this.o.redis.eval(CLAIM, 1, this.o.key, this.o.holder, String(this.o.ttlMs)),
          every,
        )) as [number, number];
        if (signal.aborted) break;
        if (reply[0] === 1) this.hold(sentAt + this.o.ttlMs - margin);
        else {
          if (this.leading) this.lose("another replica holds the timer lease");
          // Wake up right when the holder's lease would expire, not up to ttl/3 later.
          if (reply[1] > 0) wait = Math.min(every, reply[1] + 5);
        }
      } catch (err) {
        // Keep leading until the lease could have expired; the expiry timer ends it then.
        this.log.warn(
          { err: (err as Error).message, leading: this.leading },
          "could not claim or renew the timer lease",
        );
      }
      await sleep(wait, signal);
    }
  }

  private hold(validUntil: number): void {
    this.validUntil = validUntil;
    clearTimeout(this.expiry);
    this.expiry = setTimeout(
      () => this.lose("the timer lease could not be renewed in time"),
      Math.max(0, validUntil - this.o.now()),
    );
    if (this.leading) return;
    this.leading = true;
    this.log.info({ holder: this.o.holder }, "elected timer leader");
    this.events?.elected();
  }

  private lose(reason: string): void {
    clearTimeout(this.expiry);
    this.expiry = undefined;
    this.validUntil = 0;
    if (!this.leading) return;
    this.leading = false;
    this.log.info({ holder: this.o.holder, reason }, "no longer timer leader");
    this.events?.lost(reason);
  }
}

/** Rejects after `ms` (the command may still complete; a claim is idempotent for its holder). */
async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        t = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(t);
  }
}
