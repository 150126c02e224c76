import { readFileSync } from "node:fs";
import { Redis, type RedisOptions } from "ioredis";
import { redactUrl } from "./config";
import type { Logger } from "./logger";
import { backoffMs } from "./backoff";

export type { Redis };

/**
 * A Redis client that waits for the server with back-off and reconnects forever. Commands issued
 * while disconnected queue (bounded by ioredis's offline queue) rather than fail, except when the
 * caller checks `redisReady` first, as readiness probes do.
 */
export function connectRedis(opts: { url: string; logger: Logger; name: string }): Redis {
  const log = opts.logger.child({ component: "redis" });
  let attempts = 0;
  const { url, tls } = redisTls(opts.url);
  let lastError = "";
  const client = new Redis(url, {
    ...tls,
    connectionName: opts.name,
    maxRetriesPerRequest: 20,
    enableReadyCheck: true,
    retryStrategy: (times) => {
      attempts = times;
      const wait = backoffMs(times, 200, 5000);
      if (/WRONGPASS|NOAUTH|NOPERM/.test(lastError)) {
        log.error(
          { url: redactUrl(url), retryInMs: wait, err: lastError },
          "Redis refused our credentials (check FIZZ_REDIS_USER / FIZZ_REDIS_PASSWORD)",
        );
      } else log.warn({ url: redactUrl(url), retryInMs: wait }, "waiting for Redis");
      return wait;
    },
  });
  client.on("ready", () => {
    log.info({ url: redactUrl(url), afterAttempts: attempts }, "connected to Redis");
    attempts = 0;
  });
  client.on("error", (err: Error) => {
    lastError = err.message;
    log.debug({ err: err.message }, "redis error");
  });
  return client;
}

export function redisReady(client: Redis | undefined): boolean {
  return client !== undefined && client.status === "ready";
}

/**
 * `rediss://...?ca=<file>` (from FIZZ_REDIS_TLS_CA): verify the server against that CA. Every
 * Redis connection a service opens goes through this, its own extra ones (a transaction
 * connection) included, or a private CA would be ignored there.
 */
export function redisTls(raw: string): { url: string; tls: Pick<RedisOptions, "tls"> } {
  const u = new URL(raw);
  const ca = u.searchParams.get("ca");
  u.searchParams.delete("ca");
  const url = u.toString();
  if (u.protocol !== "rediss:") return { url, tls: {} };
  return { url, tls: { tls: ca ? { ca: readFileSync(ca) } : {} } };
}
