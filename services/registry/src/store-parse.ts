import { isUtf8 } from "node:buffer";
import { hash } from "node:crypto";
import {
  FizzError,
  Kinds,
  objectSchemas,
  type AnyObject,
  type Kind,
  type KindPlural,
  type ObjectsByPlural,
} from "@fizz/events";

/** What KnownJson asks of persisted digests (KnownPersist, known-persist.ts). */
export interface KnownTrust {
  vouches(kind: KindPlural, key: string, digest: string): boolean;
  learnt(kind: KindPlural): void;
  forget(kind: KindPlural, key: string): void;
  bound(kind: KindPlural, count: number): void;
}

const PLURAL_OF = Object.fromEntries(
  Object.entries(Kinds).map(([plural, kind]) => [kind, plural]),
) as Record<Kind, KindPlural>;

export function pluralOf(obj: AnyObject): KindPlural {
  return PLURAL_OF[obj.kind];
}

/**
 * A stored object, checked against its schema: Redis may hold what this registry did not write
 * (a newer registry during a rollout, an operator), and nothing unreadable may reach a caller.
 */
export function parseStored<K extends KindPlural>(
  kind: K,
  key: string,
  raw: string,
): ObjectsByPlural[K] {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    throw new FizzError("INTERNAL", `stored object ${key} is not JSON`, { cause: err });
  }
  const parsed = objectSchemas[kind].safeParse(value);
  if (!parsed.success) {
    throw new FizzError(
      "INTERNAL",
      `stored object ${key} does not match its schema: ${parsed.error.issues[0]?.message}`,
    );
  }
  return parsed.data as ObjectsByPlural[K];
}

/**
 * Stored texts this process found readable: per kind, for each object key, the SHA-256 of the
 * stored JSON text last found there that matched its schema and is byte for byte what encoding the
 * parsed object gives (its canonical form). A listing answers such a text as it is, spliced into
 * its answer, instead of parsing, checking and encoding it again: at 10,000 functions the schema
 * check was most of a page's CPU and of its garbage (every page ran the young-generation collector
 * several times).
 *
 * Learnt only from this process's own checks of what a listing read, never from Redis: an object
 * another writer changed (a newer registry during a rollout, an operator) is other text, so other
 * digest, and is checked again, left out and named in `skipped` when it does not match, exactly
 * as before. A text that matches but is not canonical (an older shape the
 * schema fills defaults into) is parsed every time, so its answer stays the parsed object's JSON.
 *
 * Bounded by the objects listed, not the writes: one digest per key, dropped when this registry
 * writes or removes the object (`forget`; the next listing learns the new text). Learning each
 * written text after its commit instead cost every write a parse, a schema check and an encoding
 * (creates 376 -> 240/s) for services that list rarely. Keys another writer deleted are dropped
 * when a listing finds more keys remembered than twice the kind's objects (+1024).
 *
 * With `trustIn` (known-persist.ts) the digests outlive the process: what is learnt is persisted
 * in a snapshot sealed under a fingerprint of this code, which only this registry's key can make,
 * and a restart trusts a text whose digest its snapshot names for the key, answering unchanged
 * objects without checking them.
 */
export class KnownJson {
  private readonly known = new Map<KindPlural, Map<string, string>>();
  /** Texts parsed and checked so far (each one a known text would have spared). */
  checks = 0;

  private trust: KnownTrust | undefined;

  /** Persists what is learnt from now on, and trusts what `trust` vouches for. */
  trustIn(trust: KnownTrust): void {
    this.trust = trust;
  }

  /** The JSON a listing answers for the object: what JSON.stringify of its parsed form gives. */
  json<K extends KindPlural>(kind: K, key: string, raw: string): string {
    const map = this.mapOf(kind);
    const digest = hash("sha256", raw, "base64");
    if (this.isKnown(map, kind, key, digest)) return raw;
    const json = JSON.stringify(this.check(map, kind, key, raw));
    this.note(map, kind, key, json === raw ? digest : undefined);
    return json;
  }

  /**
   * `json` for a text read as bytes (a page: store-page.ts): the stored bytes themselves when they
   * are known canonical, so a page's objects never become JS strings (with the registry's 1 MB
   * young generation, a page of strings ran the scavenger several times and promoted the page).
   * Not canonical: the parsed object's JSON, encoded. The digest is of the bytes, which for UTF-8
   * text is the string's digest (`json` and this share the memory); bytes that are not UTF-8 are
   * never canonical (decoding replaced them), so they are never answered as stored.
   */
  jsonBytes<K extends KindPlural>(kind: K, key: string, raw: Buffer): Buffer {
    const map = this.mapOf(kind);
    const digest = hash("sha256", raw, "base64");
    if (this.isKnown(map, kind, key, digest)) return raw;
    const text = raw.toString("utf8");
    const json = JSON.stringify(this.check(map, kind, key, text));
    // Canonical: the stored bytes are UTF-8 (so decoding replaced nothing and `text` is exactly
    // what they hold) and that text is the encoding. Compared as strings: encoding the JSON into a
    // Buffer only to compare it cost every first listing an allocation per object.
    const canonical = json === text && isUtf8(raw);
    this.note(map, kind, key, canonical ? digest : undefined);
    return canonical ? raw : Buffer.from(json);
  }

  /**
   * Learns a stored text ahead of any listing (pre-learning after start: store-page.ts learnStored), as
   * `jsonBytes` would: remembered only when it is readable and canonical. Answers whether it is;
   * an unreadable text is not logged here (the listing that meets it leaves it out and says why).
   */
  learn(kind: KindPlural, key: string, raw: Buffer): boolean {
    try {
      return this.jsonBytes(kind, key, raw) === raw;
    } catch {
      return false;
    }
  }

  /** The parsed object (as parseStored), without the schema check when its text is known. */
  object<K extends KindPlural>(kind: K, key: string, raw: string): ObjectsByPlural[K] {
    const map = this.mapOf(kind);
    const digest = hash("sha256", raw, "base64");
    // Known canonical: JSON.parse gives the object the schema gave the first time.
    if (this.isKnown(map, kind, key, digest)) return JSON.parse(raw) as ObjectsByPlural[K];
    const obj = this.check(map, kind, key, raw);
    this.note(map, kind, key, JSON.stringify(obj) === raw ? digest : undefined);
    return obj;
  }

  /** An object this process just wrote or removed: its next listing checks the stored text. */
  forget(kind: KindPlural, key: string): void {
    this.known.get(kind)?.delete(key);
    this.trust?.forget(kind, key);
  }

  /** What is remembered for the kind (key -> digest): what a persisted snapshot holds. */
  snapshot(kind: KindPlural): ReadonlyMap<string, string> {
    return this.mapOf(kind);
  }

  /** Keys remembered for the kind. */
  size(kind: KindPlural): number {
    return this.known.get(kind)?.size ?? 0;
  }

  /** Empties the kind's memory once it outgrew the kind (`count` objects stored). */
  bound(kind: KindPlural, count: number): void {
    const map = this.known.get(kind);
    if (map && map.size > 2 * count + 1024) map.clear();
    this.trust?.bound(kind, count);
  }

  /** Known in memory, or persisted for this digest by this code and correctly sealed. */
  private isKnown(
    map: Map<string, string>,
    kind: KindPlural,
    key: string,
    digest: string,
  ): boolean {
    if (map.get(key) === digest) return true;
    if (!this.trust?.vouches(kind, key, digest)) return false;
    map.set(key, digest);
    return true;
  }

  /** parseStored; an unreadable text also forgets what was known under its key. */
  private check<K extends KindPlural>(
    map: Map<string, string>,
    kind: K,
    key: string,
    raw: string,
  ): ObjectsByPlural[K] {
    this.checks++;
    try {
      return parseStored(kind, key, raw);
    } catch (err) {
      map.delete(key);
      throw err;
    }
  }

  private note(
    map: Map<string, string>,
    kind: KindPlural,
    key: string,
    digest: string | undefined,
  ): void {
    if (digest === undefined) map.delete(key);
    else if (map.get(key) !== digest) {
      map.set(key, digest);
      this.trust?.learnt(kind);
    }
  }

  private mapOf(kind: KindPlural): Map<string, string> {
    let map = this.known.get(kind);
    if (!map) this.known.set(kind, (map = new Map<string, string>()));
    return map;
  }
}
