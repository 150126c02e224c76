import { sleep } from "@fizz/kit";
import { request, type Dispatcher } from "undici";

/**
 * Polls GET /healthz until it answers 200. The first probes come fast (a bare node runtime is up
 * in tens of milliseconds) and slow down to 100 ms. Rejects early when `exited` resolves.
 */
export async function waitHealthy(
  address: string,
  agent: Dispatcher,
  opts: { timeoutMs: number; exited: Promise<void> },
): Promise<void> {
  let gone = false;
  void opts.exited.then(() => (gone = true));
  const deadline = Date.now() + opts.timeoutMs;
  let delay = 5;
  let last = "no answer";
  for (;;) {
    if (gone) throw new Error("exited before answering /healthz");
    const left = deadline - Date.now();
    if (left <= 0)
      throw new Error(`no healthy answer on /healthz within ${opts.timeoutMs} ms (${last})`);
    try {
      const res = await request(`${address}/healthz`, {
        dispatcher: agent,
        signal: AbortSignal.timeout(Math.min(2000, left)),
      });
      await res.body.text();
      if (res.statusCode === 200) return;
      last = `status ${res.statusCode}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await Promise.race([sleep(Math.min(delay, Math.max(1, deadline - Date.now()))), opts.exited]);
    delay = Math.min(delay * 2, 100);
  }
}
