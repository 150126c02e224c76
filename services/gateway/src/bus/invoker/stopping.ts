import { setMaxListeners } from "node:events";
import { sleep } from "@fizz/kit";

/**
 * One abort signal for all calls of a runner (they are all aborted together, at stop): a
 * controller per message cost more than the rest of the gateway's own work per message. Every
 * call in flight listens on it, hence no listener limit.
 */
export function stopController(): AbortController {
  const c = new AbortController();
  setMaxListeners(0, c.signal);
  return c;
}

/** Waits until `active` is empty or `ms` passed. */
export async function settle(active: { size: number }, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  // A poll, not a retry: calls end on their own; this only waits for them, bounded.
  while (active.size > 0 && Date.now() < deadline) await sleep(20);
}
