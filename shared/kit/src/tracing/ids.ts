import { randomFillSync } from "node:crypto";

/**
 * Trace and span ids from the CSPRNG, one `randomFillSync` per 4 KiB pool rather than per id: the
 * gateway makes a span id for every request, and a syscall-backed fill per request would cost more
 * than everything else tracing does there.
 */
const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

function hex(bytes: number): string {
  if (offset + bytes > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const s = pool.toString("hex", offset, offset + bytes);
  offset += bytes;
  return s;
}

/** 32 hex digits, never all zero (the spec's invalid value). */
export function newTraceId(): string {
  let id = hex(16);
  while (id === "00000000000000000000000000000000") id = hex(16);
  return id;
}

/** 16 hex digits, never all zero. */
export function newSpanId(): string {
  let id = hex(8);
  while (id === "0000000000000000") id = hex(8);
  return id;
}
