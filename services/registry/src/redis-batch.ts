import type { ChainableCommander, Redis } from "ioredis";

/**
 * WATCH (when `watchKeys` is given) and reads sent as one pipeline: one socket write for all of
 * them. Sent as separate commands they went out in the same round trip too, but ioredis writes
 * each command to the socket on its own, and on the VMs this runs on a write system call costs
 * ~60 µs (a create's transaction made a dozen). One connection answers in order, so the WATCH is
 * in force before the reads are answered, exactly as before. Resolves the reads' replies (not the
 * WATCH's); the first failed command rejects, as awaiting the commands one by one did. A failed
 * read leaves the WATCH in force (it is not undone here: a caller that goes on after the error
 * still needs its earlier WATCHes); the transaction that fails clears them (store-tx.ts).
 */
export async function readBatch(
  conn: Redis,
  watchKeys: readonly string[] | undefined,
  reads: (p: ChainableCommander) => void,
): Promise<unknown[]> {
  const p = conn.pipeline();
  const watching = watchKeys !== undefined && watchKeys.length > 0;
  if (watching) p.watch(...watchKeys);
  reads(p);
  const replies = (await p.exec()) ?? [];
  const out: unknown[] = [];
  for (const [err, value] of replies) {
    if (err) throw err;
    out.push(value);
  }
  return watching ? out.slice(1) : out;
}
