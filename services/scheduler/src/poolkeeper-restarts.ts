import { FizzError } from "@fizz/events";

/**
 * A request sent to the poolkeeper in the instant it dies reaches its dead connection (NATS has not
 * noticed yet), so no "no responders" comes back and the scheduler would wait out the whole
 * specialize timeout (15 s) while every cold request for that function waits behind it. Each
 * poolkeeper process has its own envelope sender (`poolkeeper-<id>`): when one the scheduler has
 * never heard from speaks (instance events, list replies), specializations sent before are
 * presumed lost with its predecessor and fail UNAVAILABLE at once; the gateway asks again and the
 * new poolkeeper serves it. With several poolkeeper replicas, a replica starting costs at most one
 * extra specialization per pending one (the late answer's instance is never leased and is reaped).
 */
export class PoolkeeperRestarts {
  private readonly seen = new Set<string>();
  private readonly pending = new Set<(sender: string) => void>();

  observe(sender: string): void {
    if (this.seen.has(sender)) return;
    const known = this.seen.size > 0;
    this.seen.add(sender);
    // Bounded: old senders are gone for good; forgetting one risks only a spurious retry.
    if (this.seen.size > 64) this.seen.delete(this.seen.values().next().value as string);
    if (known) for (const abort of [...this.pending]) abort(sender);
  }

  /** `p`, or UNAVAILABLE as soon as a new poolkeeper appears while it is pending. */
  guard<T>(p: Promise<T>, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const abort = (sender: string) => {
        this.pending.delete(abort);
        reject(
          new FizzError(
            "UNAVAILABLE",
            `${what}: a new poolkeeper (${sender}) started while it was pending; the one asked is gone`,
          ),
        );
      };
      this.pending.add(abort);
      // p's own outcome, whatever it is, passes through unchanged.
      p.finally(() => this.pending.delete(abort)).then(resolve, reject);
    });
  }
}
