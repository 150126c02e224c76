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
  /** knownSealKey(): snapshots are sealed with it; one it did not seal is never trusted. */
  key: Buffer;
  logger: Logger;
  /** What this process knows of a kind now (KnownJson.snapshot): what a write persists. */
  memory: (kind: KindPlural) => ReadonlyMap<string, string>;
  /** A fingerprint's snapshots live this long after its last start or write (default a week). */
  ttlSeconds?: number;
  /**
   * A kind's snapshot is written this long after the first digest learnt since (default 2 s): a
   * write is the whole snapshot (~80 bytes an object), so bursts of learning share one.
   */
  flushMs?: number;
}

const WEEK_S = 7 * 24 * 3600;
/** Fingerprints whose entries are kept: this build's and the 3 started before it (a rollout). */
const KEEP_FINGERPRINTS = 4;
/**
 * A write waits at least this many times what the last one cost on the event loop (encoding and
 * sealing the snapshots, ~2 µs an entry): at most ~2% of a CPU, and a 100,000-object kind's
 * ~200 ms rewrite every ~10 s instead of every flush period under a steady create load.
 */
const WRITE_PACE = 50;

/**
 * KnownJson's digests kept across restarts (see store-parse.ts): per fingerprint and kind, one
 * Redis string `<prefix>known:<fingerprint>:<kind>`, a sealed snapshot: an HMAC (knownSealKey) of
 * (format, fingerprint, kind, body), a newline, and the body, the JSON of [object key, digest]
 * pairs. At start one pipeline reads every kind's snapshot; one whose seal does not check out (a
 * planted or altered entry, another key, another build's or kind's snapshot copied over) is
 * ignored whole, and every text of the kind is checked as without persistence. A stored text is
 * then trusted when its digest is the one the snapshot names for its key: one SHA-256 and a
 * lookup. A seal per entry instead cost an HMAC per object (~4 µs of ~13 µs, against ~17–33 µs
 * for checking the object), which ate most of what persistence spared.
 *
 * Written off the request path: a learnt digest marks its kind, and a timer writes the kind's
 * snapshot (what this process knows, plus what it loaded and has not met yet), paced by what the
 * last write cost (WRITE_PACE). Bounded as the memory is: a snapshot holds at most one digest per
 * key, and past twice the kind's objects (+1024: keys deleted meanwhile) the loaded part is
 * dropped. Snapshots and the fingerprint index expire a week after their last write or start, and
 * a start deletes all but the newest KEEP_FINGERPRINTS fingerprints' snapshots. A Redis error only
 * loses entries: listings then check, as without persistence.
 */
export class KnownPersist {
  /** Entries read at start and not met yet (the snapshot's seal was checked as it was read). */
  private readonly loaded = new Map<KindPlural, Map<string, string>>();
  /** Kinds whose snapshot is to be written. */
  private readonly dirty = new Set<KindPlural>();
  /** Per kind, its object count as the last listing saw it (the bound). */
  private readonly counts = new Map<KindPlural, number>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private closed = false;
  private warned = false;
  /** What the last write cost on the event loop, in ms (the next one waits WRITE_PACE times it). */
  private lastWriteMs = 0;
  private readonly ttl: number;
  /** Snapshots written, and snapshots refused at load (bad seal or shape). */
  written = 0;
  refused = 0;

  constructor(private readonly opts: KnownPersistOptions) {
    this.ttl = opts.ttlSeconds ?? WEEK_S;
  }

  private snapshotKey(kind: KindPlural, fingerprint = this.opts.fingerprint): string {
    return `${this.opts.prefix}known:${fingerprint}:${kind}`;
  }

  private get indexKey(): string {
    return `${this.opts.prefix}known:fingerprints`;
  }

  /**
   * Reads every kind's snapshot (one pipeline), records this fingerprint as used and deletes the
   * snapshots of fingerprints older than the KEEP_FINGERPRINTS newest. Never rejects: on a
   * connection error it answers undefined (the next listing loads again) and nothing is trusted;
   * a key holding another type only loses its part. Answers how many entries were read.
   */
  async load(kinds: readonly KindPlural[]): Promise<number | undefined> {
    const { client, fingerprint } = this.opts;
    try {
      const t0 = performance.now();
      const p = client.pipeline();
      p.zadd(this.indexKey, Date.now(), fingerprint);
      p.expire(this.indexKey, this.ttl);
      p.zrange(this.indexKey, 0, -(KEEP_FINGERPRINTS + 1));
      for (const kind of kinds) {
        p.get(this.snapshotKey(kind));
        p.expire(this.snapshotKey(kind), this.ttl);
      }
      const res = (await p.exec()) ?? [];
      // A reply error (WRONGTYPE: something else holds the key) is that key's answer on every
      // start, not a reason to read everything again on every listing; any other (the connection)
      // is retried by the next listing.
      const failed = res.find(([e]) => e && e.name !== "ReplyError")?.[0];
      if (failed) throw failed;
      const indexFailed = res.slice(0, 3).find(([e]) => e)?.[0];
      if (indexFailed) this.warn(indexFailed, "known texts' fingerprint index not kept");
      let n = 0;
      kinds.forEach((kind, i) => {
        const [err, value] = res[3 + 2 * i]!;
        // Not a string: refused as a bad seal is (the next write replaces it).
        const map = err ? this.refuse() : this.open(kind, value as string | null);
        if (map) this.loaded.set(kind, map);
        n += map?.size ?? 0;
      });
      const old = indexFailed ? [] : (res[2]![1] as string[]).filter((fp) => fp !== fingerprint);
      if (old.length > 0) {
        const keys = old.flatMap((fp) => kinds.map((kind) => this.snapshotKey(kind, fp)));
        // Not awaited: the load is done, and a failure here only leaves them to expire.
        void client
          .pipeline()
          .del(...keys)
          .zrem(this.indexKey, ...old)
          .exec()
          .catch((err: unknown) => this.warn(err, "old builds' known texts not deleted"));
      }
      this.opts.logger.info(
        {
          component: "store",
          entries: n,
          refused: this.refused,
          ms: Math.round(performance.now() - t0),
        },
        "persisted known texts read",
      );
      return n;
    } catch (err) {
      this.warn(err, "persisted known texts not read; listings check every object");
      return undefined;
    }
  }

  /** Whether this kind's sealed snapshot names this digest for the key (used once). */
  vouches(kind: KindPlural, key: string, digest: string): boolean {
    const map = this.loaded.get(kind);
    const known = map?.get(key);
    if (known === undefined) return false;
    map!.delete(key);
    return known === digest;
  }

  /** A text this process checked and found canonical: the kind's snapshot is written soon. */
  learnt(kind: KindPlural): void {
    this.mark(kind);
  }

  /** An object this process wrote or removed: a loaded entry for it can no longer apply. */
  forget(kind: KindPlural, key: string): void {
    this.loaded.get(kind)?.delete(key);
  }

  /** The kind holds `count` objects: past 2 × count + 1024 loaded entries, they are dropped. */
  bound(kind: KindPlural, count: number): void {
    this.counts.set(kind, count);
    const loaded = this.loaded.get(kind);
    if (loaded && loaded.size > 2 * count + 1024) {
      this.loaded.delete(kind);
      this.mark(kind);
    }
  }

  /** Writes what is marked now (tests; close). */
  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flushing;
    this.flushing = this.write().finally(() => (this.flushing = undefined));
    await this.flushing;
  }

  /** Writes what is marked and stops taking more. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    this.loaded.clear();
  }

  private mark(kind: KindPlural): void {
    if (this.closed) return;
    this.dirty.add(kind);
    if (this.timer) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        if (this.flushing) return this.mark(kind);
        this.flushing = this.write().finally(() => (this.flushing = undefined));
      },
      Math.max(this.opts.flushMs ?? 2000, Math.ceil(this.lastWriteMs * WRITE_PACE)),
    );
    this.timer.unref();
  }

  private async write(): Promise<void> {
    if (this.dirty.size === 0) return;
    const t0 = performance.now();
    const p = this.opts.client.pipeline();
    for (const kind of this.dirty) {
      const entries = new Map(this.loaded.get(kind));
      const count = this.counts.get(kind);
      if (count !== undefined && entries.size > 2 * count + 1024) entries.clear();
      for (const [key, digest] of this.opts.memory(kind)) entries.set(key, digest);
      const body = JSON.stringify([...entries]);
      p.set(this.snapshotKey(kind), `${this.seal(kind, body)}\n${body}`, "EX", this.ttl);
      this.written++;
    }
    this.dirty.clear();
    this.lastWriteMs = performance.now() - t0;
    try {
      const res = (await p.exec()) ?? [];
      const failed = res.find(([e]) => e)?.[0];
      if (failed) throw failed;
    } catch (err) {
      this.warn(err, "known texts not persisted; the next start checks them");
    }
  }

  /** The snapshot's entries when its seal checks out and it is well formed, else undefined. */
  private open(kind: KindPlural, value: string | null): Map<string, string> | undefined {
    if (value === null) return undefined;
    const nl = value.indexOf("\n");
    const body = value.slice(nl + 1);
    const want = Buffer.from(this.seal(kind, body), "base64");
    const got = Buffer.from(nl < 0 ? "" : value.slice(0, nl), "base64");
    if (nl < 0 || got.length !== want.length || !timingSafeEqual(got, want)) {
      this.refused++;
      return undefined;
    }
    try {
      const pairs = JSON.parse(body) as unknown;
      if (!Array.isArray(pairs)) throw new Error("not an array");
      const map = new Map<string, string>();
      for (const pair of pairs) {
        if (!Array.isArray(pair) || typeof pair[0] !== "string" || typeof pair[1] !== "string")
          throw new Error("not a pair of strings");
        map.set(pair[0], pair[1]);
      }
      return map;
    } catch {
      // Sealed by this key and fingerprint, so written by this code: cannot happen unless the
      // format changed without KNOWN_FORMAT.
      this.refused++;
      return undefined;
    }
  }

  private refuse(): undefined {
    this.refused++;
    return undefined;
  }

  private seal(kind: KindPlural, body: string): string {
    return createHmac("sha256", this.opts.key)
      .update(`${KNOWN_FORMAT}\0${this.opts.fingerprint}\0${kind}\0`)
      .update(body)
      .digest("base64");
  }

  private warn(err: unknown, msg: string): void {
    // Once per process: Redis away means every write fails, and the listings say so already.
    if (this.warned) return;
    this.warned = true;
    this.opts.logger.warn({ component: "store", err: (err as Error).message }, msg);
  }
}
