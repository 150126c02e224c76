import { redisKeys } from "@fizz/events";
import type { Redis } from "@fizz/kit";

/** The last tick fired for a timer (ISO 8601, UTC), so a new leader knows where the previous one stopped. */
export function timerLastKey(prefix: string, namespace: string, name: string): string {
  return redisKeys(prefix).timerLast(namespace, name);
}

/**
 * Only ever moves forward: two leaders overlapping for a moment (a paused one that has not yet
 * noticed it lost leadership) cannot move the record back. ISO strings of one format compare in
 * time order.
 */
const RECORD = `
local cur = redis.call('GET', KEYS[1])
if cur and cur >= ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

/**
 * A record outlives any catch-up window by far, and then expires, so records of deleted timers
 * do not accumulate. An expired record costs nothing: it is older than any tick a catch-up may fire.
 */
const RECORD_TTL_MS = 7 * 24 * 3600 * 1000;

export interface TickRecord {
  /** The last tick fired for the timer (ms), or undefined when none is recorded. */
  lastFired(namespace: string, name: string): Promise<number | undefined>;
  recordFired(namespace: string, name: string, tick: number): Promise<void>;
  forget(namespace: string, name: string): Promise<void>;
}

export class RedisTickRecord implements TickRecord {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async lastFired(namespace: string, name: string): Promise<number | undefined> {
    const v = await this.redis.get(timerLastKey(this.prefix, namespace, name));
    const t = v === null ? NaN : Date.parse(v);
    return Number.isNaN(t) ? undefined : t;
  }

  async recordFired(namespace: string, name: string, tick: number): Promise<void> {
    await this.redis.eval(
      RECORD,
      1,
      timerLastKey(this.prefix, namespace, name),
      new Date(tick).toISOString(),
      String(RECORD_TTL_MS),
    );
  }

  async forget(namespace: string, name: string): Promise<void> {
    await this.redis.del(timerLastKey(this.prefix, namespace, name));
  }
}
