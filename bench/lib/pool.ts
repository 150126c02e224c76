import { waitFor } from "@fizz/testkit";
import type { BenchPlatform } from "./platform";

/** Resolves once the environment has `size` warm instances (the pool refilled). */
export async function warmPoolFull(p: BenchPlatform, env: string, size: number): Promise<void> {
  await waitFor(
    async () =>
      (await p.instances()).filter((i) => i.state === "warm" && i.environment.name === env)
        .length >= size,
    { timeoutMs: 60_000, intervalMs: 20, what: `warm pool of ${env}` },
  );
}

/**
 * Resolves once no instance but warm ones is left (every function instance of earlier phases
 * reaped at its idle timeout, deleted environments' instances gone), or after `timeoutMs`; returns
 * how long it waited. A measurement of one start should not share the 2 cores with the clean-up
 * of a hundred others (~30 ms of poolkeeper CPU each).
 */
export async function instancesSettled(p: BenchPlatform, timeoutMs = 60_000): Promise<number> {
  const t = performance.now();
  while (performance.now() - t < timeoutMs) {
    if ((await p.instances()).every((i) => i.state === "warm")) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return Math.round(performance.now() - t);
}
