import { Pool } from "undici";

/**
 * One keep-alive connection pool per instance address. Pools are swept when no lease and no
 * in-flight request needs their address any more, so a gateway that has seen thousands of
 * short-lived instances does not hold a pool (and idle sockets) for each.
 */
const POOL_OPTIONS: Pool.Options = {
  // A dead pod IP may swallow SYNs; fail fast so the request can go to another instance.
  connectTimeout: 3000,
  keepAliveTimeout: 4000,
  pipelining: 1,
};

export class UpstreamPools {
  private readonly pools = new Map<string, Pool>();

  get(address: string): Pool {
    let pool = this.pools.get(address);
    if (!pool) {
      pool = new Pool(address, POOL_OPTIONS);
      this.pools.set(address, pool);
    }
    return pool;
  }

  get size(): number {
    return this.pools.size;
  }

  /** Closes pools whose address is not in `inUse` (close() lets their running requests finish). */
  sweep(inUse: ReadonlySet<string>): void {
    for (const [address, pool] of this.pools) {
      if (inUse.has(address)) continue;
      this.pools.delete(address);
      pool.close().catch(() => undefined);
    }
  }

  /** Closes every pool, destroying what is still open after `graceMs`. */
  async close(graceMs: number): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(
      pools.map(async (pool) => {
        let timer: NodeJS.Timeout | undefined;
        const forced = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            pool.destroy().then(resolve, resolve);
          }, graceMs);
        });
        await Promise.race([pool.close().catch(() => undefined), forced]);
        clearTimeout(timer);
      }),
    );
  }
}
