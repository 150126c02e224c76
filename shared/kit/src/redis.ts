import { readFileSync } from "node:fs";
import { Redis, type RedisOptions } from "ioredis";
import { redactUrl } from "./config";
import type { Logger } from "./logger";
import { backoffMs } from "./backoff";
import { warnWhenSlow } from "./retry";
import { trackConnection } from "./connection-metrics";

export type { Redis };

/**
 * A Redis client that waits for the server with back-off and reconnects forever. Commands issued
 * while disconnected queue (bounded by ioredis's offline queue) rather than fail, except when the
 * caller checks `redisReady` first, as readiness probes do. ioredis owns the retry loop (its
 * `retryStrategy`); the logging follows kit's rule: a short wait is normal at start-up (debug), a
 * long one warns (`warnWhenSlow`), refused credentials are an error every time.
 */
export function connectRedis(opts: { url: string; logger: Logger; name: string }): Redis {
  const log = opts.logger.child({ component: "redis" });
  let attempts = 0;
  const { url, tls } = redisTls(opts.url);
  const shownUrl = redactUrl(url);
  let slow = warnWhenSlow(log, "waiting for Redis", { url: shownUrl });
  let lastError = "";
  // When the current wait began. ioredis counts `times` from 1 again after every connect, so
  // times === 1 starts a new wait, with its own quiet period.
  let waitingSince = Date.now();
  const client = new Redis(url, {
    ...tls,
    connectionName: opts.name,
    maxRetriesPerRequest: 20,
    enableReadyCheck: true,
    retryStrategy: (times) => {
      attempts = times;
      if (times === 1) {
        waitingSince = Date.now();
        slow = warnWhenSlow(log, "waiting for Redis", { url: shownUrl });
      }
      const wait = backoffMs(times, 200, 5000);
      if (/WRONGPASS|NOAUTH|NOPERM/.test(lastError)) {
        log.error(
          { url: shownUrl, retryInMs: wait, err: lastError },
          "Redis refused our credentials (check FIZZ_REDIS_USER / FIZZ_REDIS_PASSWORD)",
        );
      } else {
        slow({
          err: lastError || "not connected",
          attempt: times - 1,
          waitMs: wait,
          elapsedMs: Date.now() - waitingSince,
        });
      }
      return wait;
    },
  });
  const conn = trackConnection("redis", opts.name);
  client.on("ready", () => {
    log.info({ url: shownUrl, afterAttempts: attempts }, "connected to Redis");
    attempts = 0;
    conn.up();
  });
  client.on("close", () => conn.down());
  // Only after quit()/disconnect(): ioredis stops reconnecting.
  client.on("end", () => conn.closed());
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
