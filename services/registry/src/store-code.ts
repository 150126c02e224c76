import type { Redis } from "ioredis";
import { redisKeys } from "@fizz/events";

// Code blobs of the Redis era (before the Object Store): read only by the start-up migration
// (code-migration.ts), never written any more.

/** A Redis-era code blob, or undefined when there is none. */
export async function codeBlob(
  client: Redis,
  prefix: string,
  digestHex: string,
): Promise<Buffer | undefined> {
  return (await client.getBuffer(redisKeys(prefix).code(digestHex))) ?? undefined;
}

/** Hex digests of every Redis-era code blob (`code:<sha256 hex>`), by SCAN. */
export async function codeDigests(client: Redis, prefix: string): Promise<string[]> {
  const pattern = `${redisKeys(prefix).code("")}*`;
  const prefixLength = pattern.length - 1;
  const out: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", pattern, "COUNT", 500);
    cursor = next;
    for (const k of keys) {
      const hex = k.slice(prefixLength);
      if (/^[0-9a-f]{64}$/.test(hex)) out.push(hex);
    }
  } while (cursor !== "0");
  return [...new Set(out)].sort();
}
