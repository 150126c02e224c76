import { Redis } from "ioredis";
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
  const client = new Redis(opts.url, {
    connectionName: opts.name,
    maxRetriesPerRequest: 20,
    enableReadyCheck: true,
    retryStrategy: (times) => {
      attempts = times;
      const wait = backoffMs(times, 200, 5000);
      log.warn({ url: redact(opts.url), retryInMs: wait }, "waiting for Redis");
      return wait;
    },
  });
  client.on("ready", () => {
    log.info({ url: redact(opts.url), afterAttempts: attempts }, "connected to Redis");
    attempts = 0;
  });
  client.on("error", (err: Error) => log.debug({ err: err.message }, "redis error"));
  return client;
}

export function redisReady(client: Redis | undefined): boolean {
  return client !== undefined && client.status === "ready";
}

function redact(u: string): string {
  return u.replace(/\/\/([^@/]*)@/, "//***@");
}
