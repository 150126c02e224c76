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
}

const PACE: RelearnPace = { quietMs: 1000, step: 50, share: 0.5, maxPending: 100_000 };

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
  /** Keys read back and found readable and canonical (for tests and logs). */
  learnt = 0;

  constructor(
    private readonly client: Redis,
    private readonly learn: (kind: KindPlural, key: string, raw: Buffer) => boolean,
    private readonly pace: RelearnPace = PACE,
  ) {}

  /** A key written or removed: learnt again (or found gone) after the writes go quiet. */
  note(kind: KindPlural, key: string): void {
    if (this.closed) return;
    let set = this.pending.get(kind);
    if (!set) this.pending.set(kind, (set = new Set()));
    if (!set.has(key) && this.size < this.pace.maxPending) {
      set.add(key);
      this.size++;
    }
    // Every write restarts the quiet period: a burst of creates is read back once, at its end.
    this.lastNote = performance.now();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.drain(), this.pace.quietMs);
    this.timer.unref();
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
        // Writes resumed: they come first; the timer their last note set drains the rest.
        if (performance.now() - this.lastNote < this.pace.quietMs) return;
        const batch = this.take();
        if (!batch) return;
        const [kind, keys] = batch;
        let values: (Buffer | null)[];
        try {
          values = await this.client.mgetBuffer(...keys);
        } catch {
          // Redis away: these keys are left to the next listing's own check.
          continue;
        }
        if (this.closed) return;
        const t0 = performance.now();
        values.forEach((raw, i) => {
          if (raw !== null && this.learn(kind, keys[i]!, raw)) this.learnt++;
        });
        const spent = performance.now() - t0;
        const share = this.pace.share;
        await new Promise((r) => setTimeout(r, Math.max(1, (spent * (1 - share)) / share)).unref());
      }
    } finally {
      this.running = false;
    }
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
