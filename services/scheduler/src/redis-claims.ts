import { FizzError, Instance, redisKeys, type FunctionRef } from "@fizz/events";
import type { Redis } from "@fizz/kit";
import type {
  ClaimError,
  ClaimStore,
  JoinRequest,
  JoinResult,
  SlotRecord,
  SlotState,
} from "./claims";

/**
 * Claims in Redis, each step one Lua script so that replicas never interleave inside it:
 *   <prefix>lock:specialize:<ns>:<fn>:<rev>:<slot>   hash: state, owner, members, m1..mN
 *                                                     (gateways), id + instance | error
 *   <prefix>lock:specialize:<ns>:<fn>:<rev>:slots    set of slot numbers with a hash
 * An open slot expires after the claim TTL (a crashed owner), a finished one after
 * FINISHED_SLOT_TTL_MS. The set only saves scanning; entries whose hash expired are dropped on
 * the next join. The scripts build slot keys from the prefix they are given, which is fine on a
 * single Redis (and on a cluster only if every key of a revision hashes to one slot: hash tags).
 */

const JOIN = `
local idx = KEYS[1]
local base = ARGV[1]
local mode = ARGV[2]
local capacity = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local ttl = tonumber(ARGV[6])
local nlive = tonumber(ARGV[8])
local live = {}
local gone = {}
for i = 9, 8 + nlive do live[ARGV[i]] = true end
for i = 9 + nlive, #ARGV do gone[ARGV[i]] = true end
local used = {}
local busy = 0
local room = nil
for _, k in ipairs(redis.call('SMEMBERS', idx)) do
  local f = redis.call('HMGET', base .. k, 'state', 'members', 'id')
  local n = tonumber(k)
  if not f[1] then
    redis.call('SREM', idx, k)
  else
    used[n] = true
    if f[1] == 'open' then
      busy = busy + 1
      if mode == 'lease' and tonumber(f[2]) < capacity and (room == nil or n < room) then room = n end
    elseif f[1] == 'done' and not live[f[3]] and not gone[f[3]] then
      busy = busy + 1
    end
  end
end
if room ~= nil then
  local key = base .. room
  local m = redis.call('HINCRBY', key, 'members', 1)
  redis.call('HSET', key, 'm' .. m, ARGV[7])
  return {'member', room, redis.call('HGET', key, 'owner'), m}
end
if nlive + busy >= limit then return {'full', nlive, busy} end
local k = 0
while used[k] do k = k + 1 end
local key = base .. k
if mode == 'lease' then
  redis.call('HSET', key, 'state', 'open', 'owner', ARGV[5], 'members', 1, 'm1', ARGV[7])
else
  redis.call('HSET', key, 'state', 'open', 'owner', ARGV[5], 'members', 0)
end
redis.call('PEXPIRE', key, ttl)
redis.call('SADD', idx, k)
if redis.call('PTTL', idx) < ttl then redis.call('PEXPIRE', idx, ttl) end
local member = 0
if mode == 'lease' then member = 1 end
return {'owner', k, ARGV[5], member}`;

const FINISH = `
local f = redis.call('HMGET', KEYS[1], 'state', 'owner')
if f[1] ~= 'open' or f[2] ~= ARGV[1] then return nil end
local ttl = tonumber(ARGV[3])
if ARGV[2] == 'done' then
  redis.call('HSET', KEYS[1], 'state', 'done', 'id', ARGV[4], 'instance', ARGV[5])
elseif ARGV[2] == 'failed' then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'error', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'state', 'dropped')
end
redis.call('PEXPIRE', KEYS[1], ttl)
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
local n = tonumber(redis.call('HGET', KEYS[1], 'members')) or 0
local out = {}
for i = 1, n do out[i] = redis.call('HGET', KEYS[1], 'm' .. i) or '' end
return out`;

export class RedisClaims implements ClaimStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  /** `<prefix>lock:specialize:<ns>:<fn>:<rev>`; slots and the index hang below it. */
  base(fn: FunctionRef): string {
    return redisKeys(this.prefix).lock(`specialize:${fn.namespace}:${fn.name}:${fn.revision}`);
  }

  async join(req: JoinRequest): Promise<JoinResult> {
    const base = this.base(req.fn);
    const r = (await this.redis.eval(
      JOIN,
      1,
      `${base}:slots`,
      `${base}:`,
      req.mode,
      req.capacity,
      req.limit,
      req.owner,
      req.ttlMs,
      req.gateway,
      req.live.length,
      ...req.live,
      ...req.gone,
    )) as [string, number, string | number, number?];
    if (r[0] === "full") return { kind: "full", live: Number(r[1]), busy: Number(r[2]) };
    const kind = r[0] === "owner" ? "owner" : "member";
    return { kind, slot: Number(r[1]), owner: String(r[2]), member: Number(r[3]) };
  }

  async finish(
    fn: FunctionRef,
    slot: number,
    owner: string,
    outcome:
      | { state: "done"; instance: Instance }
      | { state: "failed"; error: ClaimError }
      | { state: "dropped" },
    ttlMs: number,
  ): Promise<SlotRecord | undefined> {
    const base = this.base(fn);
    const id = outcome.state === "done" ? outcome.instance.id : "";
    const payload =
      outcome.state === "done"
        ? JSON.stringify(outcome.instance)
        : outcome.state === "failed"
          ? JSON.stringify(outcome.error)
          : "";
    // The members' gateways only: the owner has the outcome it wrote, and reading the instance
    // back (its JSON, its schema check) would be work on the cold path for nothing.
    const members = (await this.redis.eval(
      FINISH,
      2,
      `${base}:${slot}`,
      `${base}:slots`,
      owner,
      outcome.state,
      ttlMs,
      id,
      payload,
    )) as string[] | null;
    if (!members) return undefined;
    const rec: SlotRecord = { state: outcome.state, owner, members };
    if (outcome.state === "done") rec.instance = outcome.instance;
    if (outcome.state === "failed") rec.error = outcome.error;
    return rec;
  }

  async read(fn: FunctionRef, slot: number): Promise<SlotRecord | undefined> {
    const h = await this.redis.hgetall(`${this.base(fn)}:${slot}`);
    return Object.keys(h).length > 0 ? parseRecord(h) : undefined;
  }
}

const STATES: readonly SlotState[] = ["open", "done", "failed", "dropped"];

/** A record another replica wrote; anything unreadable is refused loudly rather than routed to. */
function parseRecord(h: Record<string, string>): SlotRecord {
  const state = STATES.find((s) => s === h.state);
  if (!state || h.owner === undefined)
    throw new FizzError("INTERNAL", "malformed specialization claim in Redis");
  const n = Number(h.members ?? 0);
  const members: string[] = [];
  for (let i = 1; i <= n; i++) members.push(h[`m${i}`] ?? "");
  const rec: SlotRecord = { state, owner: h.owner, members };
  if (state === "done") {
    const parsed = Instance.safeParse(JSON.parse(h.instance ?? "null"));
    if (!parsed.success)
      throw new FizzError("INTERNAL", "malformed instance in a specialization claim");
    rec.instance = parsed.data;
  }
  if (state === "failed") rec.error = FizzError.fromWire(JSON.parse(h.error ?? "null")).toWire();
  return rec;
}
