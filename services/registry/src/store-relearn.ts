import type { Redis } from "ioredis";
import type { KindPlural } from "@fizz/events";

/** When and how fast written keys are learnt again. */
export interface RelearnPace {
  /** Writes must have stopped this long before anything is read (a burst is learnt once, after). */
  quietMs: number;
  /** Keys per step: one MGET and one synchronous run of checks, what a request waits at most. */
  step: number;
  /** After a step of t ms of checks it sleeps t × (1 − share) / share (at least 1 ms). */
  share: number;
  /** Keys held at most; past it, further writes are left to the next listing's own check. */
  maxPending: number;
  /**
   * How long the oldest queued key waits for quiet at most. A client that writes without a
   * pause (a CI loop, a controller re-applying specs) never gives a quiet period: every key it
   * wrote stayed queued (up to maxPending, ~11 MB) and none was learnt until it stopped.
   */
  maxWaitMs: number;
}

export const RELEARN_PACE: RelearnPace = {
  quietMs: 1000,
  step: 50,
  share: 0.5,
  maxPending: 100_000,
  maxWaitMs: 10_000,
};

/**
 * Learns written objects' texts again once writes have gone quiet. A write forgets its key's
 * known text (learning it on the write's path cost every create a parse, a schema check and an
 * encoding: 376 → 240 creates/s), so the first listing after many writes checked every object on
 * the listing's time: at 10,000 functions just created, its slowest pages were the REST list's
 * p99. Here those keys are read back and learnt after the burst, off every request's path and at
 * most half a CPU. Learning is keyed by the digest of the exact bytes read, so a write racing the
 * read leaves a digest its new text does not match, which the listing then checks as before: this
 * can make a listing cheaper, never answer a text it did not check.
 */
export class Relearn {
  private readonly pending = new Map<KindPlural, Set<string>>();
  private size = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private closed = false;
  private lastNote = 0;
  /** When the queue last went from empty to holding a key (maxWaitMs counts from there). */
  private firstPending = 0;
  /** Kinds learnt since the last `drained` (a drain cut short by writes carries them over). */
  private readonly learntKinds = new Set<KindPlural>();
  /** Keys read back and found readable and canonical (for tests and logs). */
  learnt = 0;

  constructor(
    private readonly client: Redis,
    private readonly learn: (kind: KindPlural, key: string, raw: Buffer) => boolean,
    private readonly pace: RelearnPace = RELEARN_PACE,
    /**
     * After the queue is drained, for the kinds it learnt: the store bounds its memory there
     * (KnownJson.bound), as every listing does. Learning here involves no listing, so without it
     * objects written here and removed by another writer stayed remembered until one listed.
     */
    private readonly drained?: (kinds: KindPlural[]) => Promise<void>,
  ) {}

  /** A key written: learnt again (or found gone) after the writes go quiet. */
  note(kind: KindPlural, key: string): void {
    if (this.closed) return;
    this.add(kind, key);
    // Every write restarts the quiet period: a burst of creates is read back once, at its end.
    this.lastNote = performance.now();
    this.schedule(Math.min(this.pace.quietMs, this.untilOverdue()));
  }

  /** Milliseconds until the oldest queued key has waited maxWaitMs (0: it has). */
  private untilOverdue(): number {
    return Math.max(0, Math.ceil(this.firstPending + this.pace.maxWaitMs - performance.now()));
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.pending.clear();
    this.size = 0;
  }

  private async drain(): Promise<void> {
    if (this.running || this.closed) return;
    this.running = true;
    try {
      for (;;) {
        if (this.closed) return;
        // Writes resumed: they come first, and the rest waits out the quiet period again. Also
        // when this very timer fired early by this clock (timers count whole milliseconds of the
        // loop's time): returning without a timer left the keys queued until some later write.
        // Past maxWaitMs the queue is read while writes go on, still at most `share` of a CPU.
        const quiet = performance.now() - this.lastNote;
        const overdueIn = this.size > 0 ? this.untilOverdue() : Infinity;
        if (quiet < this.pace.quietMs && overdueIn > 0) {
          this.schedule(Math.min(Math.ceil(this.pace.quietMs - quiet), overdueIn));
          return;
        }
        const batch = this.take();
        if (!batch) {
          const kinds = [...this.learntKinds];
          if (kinds.length === 0) return;
          this.learntKinds.clear();
          await this.drained?.(kinds).catch(() => undefined);
          // A write meanwhile found this drain running: the loop, not its timer, reads it.
          continue;
        }
        const [kind, keys] = batch;
        let values: (Buffer | null)[];
        try {
          values = await this.client.mgetBuffer(...keys);
        } catch {
          // Redis away: the keys go back and the next try waits a quiet period (one read a
          // period while it is away, rather than every step's keys dropped in a burst of calls).
          if (this.closed) return;
          for (const key of keys) this.add(kind, key);
          this.schedule(this.pace.quietMs);
          return;
        }
        if (this.closed) return;
        this.learntKinds.add(kind);
        const t0 = performance.now();
        values.forEach((raw, i) => {
          if (raw !== null && this.learn(kind, keys[i]!, raw)) this.learnt++;
        });
        await yieldShare(performance.now() - t0, this.pace.share);
      }
    } finally {
      this.running = false;
    }
  }

  /** Queues a key unless it is queued already or the queue is full. */
  private add(kind: KindPlural, key: string): void {
    let set = this.pending.get(kind);
    if (!set) this.pending.set(kind, (set = new Set()));
    if (!set.has(key) && this.size < this.pace.maxPending) {
      if (this.size === 0) this.firstPending = performance.now();
      set.add(key);
      this.size++;
    }
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.drain(), ms);
    this.timer.unref();
  }

  /** Up to one step of keys of one kind, removed from the pending set. */
  private take(): [KindPlural, string[]] | undefined {
    for (const [kind, set] of this.pending) {
      const keys: string[] = [];
      for (const key of set) {
        keys.push(key);
        set.delete(key);
        if (keys.length === this.pace.step) break;
      }
      if (set.size === 0) this.pending.delete(kind);
      this.size -= keys.length;
      if (keys.length > 0) return [kind, keys];
    }
    return undefined;
  }
}

/**
 * After a step of background learning that took `spentMs` of CPU: sleeps so the work takes at
 * most `share` of one CPU (at least 1 ms, so requests and writes queued meanwhile run first).
 */
export function yieldShare(spentMs: number, share: number): Promise<void> {
  const ms = Math.max(1, (spentMs * (1 - share)) / share);
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
