import { createHmac, timingSafeEqual } from "node:crypto";
import type { Redis } from "ioredis";
import type { KindPlural } from "@fizz/events";
import type { Logger } from "@fizz/kit";
import { KNOWN_FORMAT } from "./known-fingerprint";

/** Where and how long persisted entries live, and how they are written. */
export interface KnownPersistOptions {
  client: Redis;
  prefix: string;
  /** codeFingerprint(): entries of another build are never read. */
  fingerprint: string;
  /** knownSealKey(): entries are sealed with it; one it did not seal is never trusted. */
  key: Buffer;
  logger: Logger;
  /** A fingerprint's hashes live this long after its last start or write (default a week). */
  ttlSeconds?: number;
  /** Newly learnt entries are written this long after the first of a batch (default 200 ms). */
  flushMs?: number;
}

const WEEK_S = 7 * 24 * 3600;
/** Fingerprints whose entries are kept: this build's and the 3 started before it (a rollout). */
const KEEP_FINGERPRINTS = 4;
/** Fields per HSET: one command's reply stays small, the batch still one pipeline. */
const FIELDS_PER_HSET = 1000;

/**
 * KnownJson's digests kept across restarts (see store-parse.ts): per fingerprint and kind, one
 * Redis hash `<prefix>known:<fingerprint>:<kind>` of object key -> `<digest>.<seal>`, the seal an
 * HMAC (knownSealKey) of (format, fingerprint, kind, key, digest). At start one pipeline reads
 * every kind's hash (HGETALL); a stored text whose digest an entry names is trusted only after the
 * entry's seal checks out (lazily, on first read: one HMAC instead of a parse, a schema check and
 * an encoding). A bare digest, one sealed with another key, for another key, kind or build, is
 * not trusted: the text is checked as if nothing were persisted.
 *
 * Written off the request path: learning queues the entry and a timer writes the batch in one
 * pipeline (HSET, EXPIRE). Bounded as the memory is: an object written again gets its field
 * overwritten when its new text is learnt; when a hash holds more than twice the kind's objects
 * (+1024, keys deleted meanwhile) it is rewritten from what this process holds. Every hash and
 * the fingerprint index expire a week after their last write, and at start all but the newest
 * KEEP_FINGERPRINTS fingerprints' hashes are deleted, so old builds' entries go. A Redis error
 * anywhere here only loses entries: listings then check, as without persistence.
 */
export class KnownPersist {
  /** Entries read at start, not yet vouched for (their seal is checked on first use). */
  private readonly loaded = new Map<KindPlural, Map<string, string>>();
  /** Digests learnt and not yet written (sealed when written, off the listing's time). */
  private readonly pending = new Map<KindPlural, Map<string, string>>();
  /** Fields each kind's hash holds, as far as this process knows (HLEN at start + new HSETs). */
  private readonly stored = new Map<KindPlural, number>();
  /** Kinds whose hash is to be rewritten from memory (it outgrew the kind). */
  private readonly rewrite = new Map<KindPlural, Map<string, string>>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private closed = false;
  private readonly ttl: number;
  /** Entries written, and entries refused at load (bad seal) or dropped (for tests and logs). */
  written = 0;
  refused = 0;

  constructor(private readonly opts: KnownPersistOptions) {
    this.ttl = opts.ttlSeconds ?? WEEK_S;
  }

  private hashKey(kind: KindPlural, fingerprint = this.opts.fingerprint): string {
    return `${this.opts.prefix}known:${fingerprint}:${kind}`;
  }

  private get indexKey(): string {
    return `${this.opts.prefix}known:fingerprints`;
  }

  /**
   * Reads every kind's persisted entries (one pipeline), records this fingerprint as used and
   * deletes the hashes of fingerprints older than the KEEP_FINGERPRINTS newest. Never rejects:
   * on an error it answers undefined (what a failed pipeline left is still only ever vouched for
   * by its seal). Answers how many entries were read.
   */
  async load(kinds: readonly KindPlural[]): Promise<number | undefined> {
    const { client, fingerprint } = this.opts;
    try {
      const p = client.pipeline();
      p.zadd(this.indexKey, Date.now(), fingerprint);
      p.expire(this.indexKey, this.ttl);
      p.zrange(this.indexKey, 0, -(KEEP_FINGERPRINTS + 1));
      for (const kind of kinds) {
        p.hgetall(this.hashKey(kind));
        p.expire(this.hashKey(kind), this.ttl);
      }
      const t0 = performance.now();
      const res = (await p.exec()) ?? [];
      const failed = res.find(([e]) => e)?.[0];
      if (failed) throw failed;
      let n = 0;
      kinds.forEach((kind, i) => {
        const fields = res[3 + 2 * i]![1] as Record<string, string>;
        const map = new Map(Object.entries(fields));
        this.loaded.set(kind, map);
        this.stored.set(kind, map.size);
        n += map.size;
      });
      const old = (res[2]![1] as string[]).filter((fp) => fp !== fingerprint);
      if (old.length > 0) {
        const keys = old.flatMap((fp) => kinds.map((kind) => this.hashKey(kind, fp)));
        // Not awaited: the load is done, and a failure here only leaves them to expire.
        void client
          .pipeline()
          .del(...keys)
          .zrem(this.indexKey, ...old)
          .exec()
          .catch((err: unknown) => this.warn(err, "old builds' known texts not deleted"));
      }
      this.opts.logger.info(
        { component: "store", entries: n, ms: Math.round(performance.now() - t0) },
        "persisted known texts read",
      );
      return n;
    } catch (err) {
      this.warn(err, "persisted known texts not read; listings check every object");
      return undefined;
    }
  }

  /** Whether a persisted, correctly sealed entry names this digest for the key (used once). */
  vouches(kind: KindPlural, key: string, digest: string): boolean {
    const map = this.loaded.get(kind);
    const entry = map?.get(key);
    if (entry === undefined) return false;
    map!.delete(key);
    const dot = entry.indexOf(".");
    // Another digest: the object changed since (checked as any changed text is).
    if (dot >= 0 && entry.slice(0, dot) !== digest) return false;
    if (dot >= 0 && this.sealOk(kind, key, digest, entry.slice(dot + 1))) return true;
    this.refused++;
    return false;
  }

  /** A text this process checked and found canonical: persisted with the next batch. */
  learnt(kind: KindPlural, key: string, digest: string): void {
    if (this.closed) return;
    let map = this.pending.get(kind);
    if (!map) this.pending.set(kind, (map = new Map<string, string>()));
    map.set(key, digest);
    this.schedule();
  }

  /** An object this process wrote or removed: a loaded entry for it can no longer apply. */
  forget(kind: KindPlural, key: string): void {
    this.loaded.get(kind)?.delete(key);
  }

  /**
   * The kind holds `count` objects: past 2 × count + 1024 fields (keys deleted since they were
   * learnt), its hash is rewritten from `known` (what this process holds and checked itself).
   */
  bound(kind: KindPlural, count: number, known: ReadonlyMap<string, string>): void {
    const loaded = this.loaded.get(kind);
    if (loaded && loaded.size > 2 * count + 1024) loaded.clear();
    if ((this.stored.get(kind) ?? 0) <= 2 * count + 1024 || this.closed) return;
    this.rewrite.set(kind, new Map(known));
    this.pending.delete(kind);
    this.schedule();
  }

  /** Writes what is queued now (tests; close). */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flushing;
    this.flushing = this.write().finally(() => (this.flushing = undefined));
    await this.flushing;
  }

  /** Writes what is queued and stops taking more. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    this.loaded.clear();
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.flushing) return this.schedule();
      this.flushing = this.write().finally(() => (this.flushing = undefined));
    }, this.opts.flushMs ?? 200);
    this.timer.unref();
  }

  private async write(): Promise<void> {
    if (this.pending.size === 0 && this.rewrite.size === 0) return;
    const p = this.opts.client.pipeline();
    const counted: [KindPlural, number][] = [];
    for (const [kind, known] of this.rewrite) {
      p.del(this.hashKey(kind));
      this.stored.set(kind, 0);
      this.hset(p, kind, known, counted);
    }
    this.rewrite.clear();
    for (const [kind, fields] of this.pending) this.hset(p, kind, fields, counted);
    this.pending.clear();
    try {
      const res = (await p.exec()) ?? [];
      const failed = res.find(([e]) => e)?.[0];
      if (failed) throw failed;
      // HSET answers how many fields were new: the hash's size as this process knows it.
      for (const [kind, i] of counted)
        this.stored.set(kind, (this.stored.get(kind) ?? 0) + Number(res[i]?.[1] ?? 0));
    } catch (err) {
      this.warn(err, "known texts not persisted; the next start checks them");
    }
  }

  private hset(
    p: ReturnType<Redis["pipeline"]>,
    kind: KindPlural,
    fields: Map<string, string>,
    counted: [KindPlural, number][],
  ): void {
    const key = this.hashKey(kind);
    let batch: string[] = [];
    const send = () => {
      if (batch.length === 0) return;
      p.hset(key, ...batch);
      counted.push([kind, p.length - 1]);
      batch = [];
    };
    for (const [field, digest] of fields) {
      batch.push(field, `${digest}.${this.seal(kind, field, digest)}`);
      this.written++;
      if (batch.length >= 2 * FIELDS_PER_HSET) send();
    }
    send();
    p.expire(key, this.ttl);
  }

  private seal(kind: KindPlural, key: string, digest: string): string {
    return createHmac("sha256", this.opts.key)
      .update(`${KNOWN_FORMAT}\0${this.opts.fingerprint}\0${kind}\0${key}\0${digest}`)
      .digest("base64");
  }

  private sealOk(kind: KindPlural, key: string, digest: string, seal: string): boolean {
    const want = Buffer.from(this.seal(kind, key, digest), "base64");
    const got = Buffer.from(seal, "base64");
    return got.length === want.length && timingSafeEqual(got, want);
  }

  private warned = false;
  private warn(err: unknown, msg: string): void {
    // Once per process: Redis away means every batch fails, and the listings say so already.
    if (this.warned) return;
    this.warned = true;
    this.opts.logger.warn({ component: "store", err: (err as Error).message }, msg);
  }
}
