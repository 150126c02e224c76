import { Instance, redisKeys } from "@fizz/events";
import type { Logger, Redis } from "@fizz/kit";

/**
 * The durable copy of the scheduler's instance table (the "route cache"), the only Redis keys the
 * scheduler owns:
 *   <prefix>routes:<ns>:<fn>   hash, field instanceId -> JSON Instance (function.revision inside)
 *   <prefix>routes:index       set of "<ns>/<fn>" that have a routes hash
 * Written once per specialization (and adoption), removed on retire/death. The lease path never
 * reads it: it is for rebuilding after a restart.
 */
export interface RouteStore {
  put(instance: Instance): Promise<void>;
  remove(namespace: string, name: string, instanceId: string): Promise<void>;
  loadAll(): Promise<Instance[]>;
}

// Removing the last field and the index entry must be atomic, or a concurrent put from another
// replica could land between HLEN and SREM and leave a hash the index does not name.
const REMOVE_SCRIPT = `
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
return 1`;

export class RedisRouteCache implements RouteStore {
  private readonly index: string;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly logger: Logger,
  ) {
    this.index = redisKeys(prefix).routesIndex;
  }

  hashKey(namespace: string, name: string): string {
    return redisKeys(this.prefix).routes(namespace, name);
  }

  async put(instance: Instance): Promise<void> {
    const fn = instance.function;
    if (!fn)
      throw new Error(
        `instance ${instance.id} has no function; only specialized instances are routes`,
      );
    const results = await this.redis
      .multi()
      .hset(this.hashKey(fn.namespace, fn.name), instance.id, JSON.stringify(instance))
      .sadd(this.index, `${fn.namespace}/${fn.name}`)
      .exec();
    const failed = results?.find(([err]) => err);
    if (!results || failed)
      throw new Error(`route cache write failed: ${failed?.[0]?.message ?? "transaction aborted"}`);
  }

  async remove(namespace: string, name: string, instanceId: string): Promise<void> {
    await this.redis.eval(
      REMOVE_SCRIPT,
      2,
      this.hashKey(namespace, name),
      this.index,
      instanceId,
      `${namespace}/${name}`,
    );
  }

  async loadAll(): Promise<Instance[]> {
    const members = await this.redis.smembers(this.index);
    if (members.length === 0) return [];
    const pipe = this.redis.pipeline();
    const keys = members.map((m) => {
      const [ns = "", fn = ""] = m.split("/");
      return { ns, fn };
    });
    for (const k of keys) pipe.hgetall(this.hashKey(k.ns, k.fn));
    const results = (await pipe.exec()) ?? [];
    const out: Instance[] = [];
    results.forEach(([err, value], i) => {
      const k = keys[i];
      if (err || !k) {
        this.logger.warn({ err: err?.message, member: members[i] }, "could not read a routes hash");
        return;
      }
      for (const [id, json] of Object.entries((value ?? {}) as Record<string, string>)) {
        const parsed = parseInstance(json);
        const f = parsed?.function;
        if (!parsed || !f || parsed.id !== id || f.namespace !== k.ns || f.name !== k.fn) {
          // Not ours to repair blindly, but it must not become a route: skip it and say so.
          this.logger.warn(
            { key: this.hashKey(k.ns, k.fn), field: id },
            "skipped an invalid route cache entry",
          );
          continue;
        }
        out.push(parsed);
      }
    });
    return out;
  }
}

function parseInstance(json: string): Instance | undefined {
  try {
    const r = Instance.safeParse(JSON.parse(json));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
