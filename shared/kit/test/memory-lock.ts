import type { FakeClock } from "@fizz/testkit";
import { LockConflict, type LeaderLock } from "../src/leader-kv-lock";

/**
 * The KV bucket in memory: compare-and-set on a revision, and expiry `ttlMs` after the last write
 * on true time. `cut(name)` makes that contender's calls hang, as a connection to a NATS that stopped
 * answering does; `lateBy` stores a write at once but answers it that much later.
 */
export class MemoryLock {
  private key: { value: string; revision: number; writtenAt: number } | undefined;
  private seq = 0;
  private readonly cutOff = new Set<string>();
  lateBy = 0;
  calls = 0;

  constructor(
    private readonly time: FakeClock,
    private readonly ttlMs: number,
  ) {}

  get holder(): string | undefined {
    return this.current()?.value;
  }

  /** Another writer (an operator, a bug) overwrites the key. */
  steal(value: string): void {
    this.key = { value, revision: ++this.seq, writtenAt: this.time.t };
  }

  cut(name: string): void {
    this.cutOff.add(name);
  }

  /** One contender's connection to the store. */
  for(name: string): LeaderLock {
    const op = <T>(fn: () => T) => this.op(name, fn);
    return {
      create: (value) =>
        op(() => {
          if (this.current()) throw new LockConflict(new Error("wrong last sequence"));
          return this.write(value);
        }),
      update: (value, revision) =>
        op(() => {
          if (this.current()?.revision !== revision)
            throw new LockConflict(new Error("wrong last sequence"));
          return this.write(value);
        }),
      read: () =>
        op(() => {
          const k = this.current();
          return k && { value: k.value, revision: k.revision };
        }),
      release: (revision) =>
        op(() => {
          if (this.current()?.revision === revision) this.key = undefined;
        }),
    };
  }

  private current() {
    if (this.key && this.time.t >= this.key.writtenAt + this.ttlMs) this.key = undefined;
    return this.key;
  }

  private write(value: string): number {
    this.key = { value, revision: ++this.seq, writtenAt: this.time.t };
    return this.seq;
  }

  private op<T>(name: string, fn: () => T): Promise<T> {
    this.calls++;
    if (this.cutOff.has(name)) return new Promise<T>(() => undefined);
    const result = new Promise<T>((resolve) => resolve(fn()));
    if (this.lateBy === 0) return result;
    const late = this.lateBy;
    return new Promise<T>((resolve, reject) => {
      this.time.after(late, () => void result.then(resolve, reject));
    });
  }
}
