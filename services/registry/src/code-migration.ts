import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { Logger } from "@fizz/kit";
import type { ArchiveStore } from "@fizz/kit/archive-store";
import type { Store } from "./store";

export interface MigrationResult {
  /** Blobs copied into the Object Store now. */
  copied: number;
  /** Blobs that were already there (an earlier start copied them, or a new write). */
  present: number;
  /** Blobs whose bytes do not hash to their key: left out, and logged. */
  corrupt: number;
}

/**
 * Copies every Redis-era code blob (`code:<hex>`, before code moved to the Object Store) that the
 * store does not hold yet, after checking its bytes hash to its name. Idempotent: a restart copies
 * only what is still missing.
 *
 * The Redis keys are left in place, deliberately: during a rolling upgrade a poolkeeper of the
 * previous version still reads code from Redis, and a registry rolled back to the previous version
 * serves code from there too. They are immutable, so they cannot go stale; an operator removes
 * them once every service is upgraded (docs/operations.md).
 */
export async function migrateRedisCode(
  store: Store,
  archives: ArchiveStore,
  logger: Logger,
): Promise<MigrationResult> {
  const result: MigrationResult = { copied: 0, present: 0, corrupt: 0 };
  for (const hex of await store.codeDigests()) {
    const digest = `sha256:${hex}`;
    if (await archives.has(digest)) {
      result.present++;
      continue;
    }
    const bytes = await store.getCode(hex);
    if (bytes === undefined) continue; // deleted meanwhile
    if (createHash("sha256").update(bytes).digest("hex") !== hex) {
      result.corrupt++;
      logger.error({ digest }, "Redis code blob does not hash to its name; not copied");
      continue;
    }
    await archives.putStream(Readable.from([bytes]), digest);
    result.copied++;
  }
  if (result.copied + result.corrupt > 0 || result.present > 0)
    logger.info({ ...result }, "Redis code blobs migrated to the Object Store");
  return result;
}
