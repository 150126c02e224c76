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
